"""tpu_driver/backends"""

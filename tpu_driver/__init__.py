"""tpu_driver"""

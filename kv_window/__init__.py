"""kv_window"""

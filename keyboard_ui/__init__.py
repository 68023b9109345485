"""keyboard_ui"""

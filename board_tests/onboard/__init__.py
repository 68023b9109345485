"""board_tests/onboard"""

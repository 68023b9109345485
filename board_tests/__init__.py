"""board_tests"""

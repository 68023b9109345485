"""model_export"""

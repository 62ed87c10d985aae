"""fer_core: facial expression recognition on FER2013-style data (data, models, training, evaluation)."""

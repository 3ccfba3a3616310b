"""The Gymnasium trainer (vector_training) and the evaluation report."""

"""Official PyTorch checkpoint -> audiorep (orbax + JSON config), one module per model family."""

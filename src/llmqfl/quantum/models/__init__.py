"""What a quantum classifier is: feature maps, ansätze, the model kinds and their readouts (no execution)."""

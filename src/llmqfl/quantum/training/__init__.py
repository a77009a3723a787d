"""One client's local training: evaluators (class probabilities, exact or by primitive), losses,
optimizers with a hard evaluation budget, and the local loop that ties them together."""

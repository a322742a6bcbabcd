"""Training: typed config, loss and miner contracts, P x K sampling, chips, the loop and its callbacks,
export to a weights folder."""

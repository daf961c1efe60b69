"""bench/gateway: direct random balancing over a ModelService's pods vs `modelkube gateway`."""

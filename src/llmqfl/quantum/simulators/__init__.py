"""How the simulators compute outcome distributions: the exact statevector engine, Aer's sampler,
the numpy density-matrix engine for device noise, and per-pub seeding."""

"""Pure numpy kernels: no Spark here, so they are unit-tested and benchmarked alone."""

from setuptools import find_packages, setup

setup(
    name="recsys-spark",
    version="0.1.0",
    description="Nightly top-N recommendations and item similarity on Spark",
    python_requires=">=3.10",
    packages=find_packages(include=["recsys_spark", "recsys_spark.*"]),
    install_requires=[
        "pyspark>=4.0,<5",
        "tensorflow>=2.16",
        "numpy>=2.2",  # kernels/wals_blocks.py: batched matvec/vecmat products
        "pandas>=2.0,<3",
        "pyarrow>=15",
        "pyyaml>=6",
        "matplotlib>=3.8",
    ],
    extras_require={
        # duckdb: a real SQL client reads the published tables; pytest-xdist: make test runs two workers
        "test": ["pytest>=8", "duckdb>=1.1", "pytest-xdist>=3.5"],
        # the reference ALS of scripts/bench_models.py and bench_training.py, and the CSR matrices they give it
        "bench": ["implicit>=0.7", "threadpoolctl>=3", "scipy>=1.10"],
    },
    entry_points={"console_scripts": ["recsys-spark=recsys_spark.app.cli:main"]},
)

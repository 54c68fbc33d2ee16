"""minicnn: a CNN engine from scratch on NumPy/CuPy, every op checked against PyTorch."""
from setuptools import find_packages, setup

TRAIN = ["tqdm>=4.60", "matplotlib>=3.5", "scikit-learn>=1.0", "pillow>=9.0"]
# data-parallel training (minicnn.distributed, minicnn train --distributed): mpi4py, and
# MPICH's wheel for the MPI library and its mpiexec
DIST = ["mpi4py>=4", "mpich>=4; platform_system != 'Windows'"]   # Windows: MS-MPI

setup(
    name="minicnn",
    version="0.1.0",
    description="A convolutional-network engine written from scratch on NumPy and CuPy, "
                "with hand-written backward passes checked against PyTorch",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["minicnn", "minicnn.*", "kernels", "kernels.*",
                                    "benchmarks", "benchmarks.*"]),
    include_package_data=True,
    # threadpoolctl: the convolution fast paths read and set NumPy's BLAS thread count
    # (kernels/_threads.py)
    install_requires=["numpy>=1.22", "numba>=0.56", "threadpoolctl>=3"],
    extras_require={
        # the main job: progress bars, learning-curve plots, the offline digits data
        "train": TRAIN,
        # cupy-cuda12x: tests/fake_cupy.py reads CuPy's names from it (it imports without
        # a GPU); CuPy 14 needs NumPy 2. Its wheels are for Linux and Windows.
        # DIST: the tests launch `mpiexec -n 2` (skipped only where it is missing)
        "test": TRAIN + DIST + ["pytest>=7", "hypothesis>=6", "torch==2.13.0",
                                "cupy-cuda12x>=14; platform_system != 'Darwin'"],
        # CuPy 14 runs on NumPy 2 only, and finds the CUDA libraries it compiles against
        # (NVRTC, cuBLAS, ...) through the [ctk] wheels rather than a system toolkit
        "gpu": ["cupy-cuda12x[ctk]>=14", "numpy>=2"],
        "bench": TRAIN + DIST + ["torch==2.13.0"],
        "dist": DIST,
    },
    entry_points={"console_scripts": ["minicnn=minicnn.cli:main"]},
    license="MIT",
)

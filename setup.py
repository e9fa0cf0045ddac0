"""GRec-TF: the Generalist Recommender on TensorFlow Recommenders."""
from setuptools import find_packages, setup

setup(
    name="grec-tf",
    version="0.1.0",
    description="Generalist Recommender (task-sentence routed sparse MoE) on TensorFlow Recommenders",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["grec_tf", "grec_tf.*", "pipelines", "pipelines.*"]),
    package_data={"": ["*.yaml"]},
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-text==2.21.*",
        "tensorflow-hub==0.16.*",
        "tfx-bsl==1.21.*",
        "tensorflow-transform==1.21.*",  # the Beam preprocessing pipeline (pipelines.preprocess)
        "pandas",
        "pyarrow",
        "PyYAML",
        "tensorboard==2.21.*",
        "matplotlib",
        "aiohttp>=3.9",
        "uvloop>=0.19",  # pipelines.serve's event loop: REST columnar 0.910x vs asyncio's 0.891x (docs/serving.md)
        "orjson",
        "pysimdjson>=6",  # columnar REST bodies: float tensors straight from its buffers (grec_tf.serving.columnar_body)
        # TF Serving's gRPC API: the official protos and stubs, the gRPC runtime, Prometheus metrics
        "tensorflow-serving-api>=2.19,<3",
        "grpcio",
        "prometheus-client>=0.20",
        "scipy",  # the telecom Bayes ceiling (special functions, sparse sums)
        "scikit-learn",  # AUC, AP and log loss in grec_tf.metrics
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel"],
        # peer libraries the throughput benchmark compares against (never needed to train or serve)
        "peers": ["deepctr==0.9.4", "lightgbm"],
    },
)

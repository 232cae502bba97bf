"""jaxsenti: Chinese review sentiment analysis in JAX/Flax."""

__version__ = "0.1.0"

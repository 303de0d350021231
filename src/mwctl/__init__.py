"""mwctl: a maintenance window as code that ops can rehearse, run, prove and roll back."""

__version__ = "0.1.0"

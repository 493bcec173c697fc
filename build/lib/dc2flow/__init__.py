"""dc2flow: DC2-style image simulation campaigns as a Snakemake workflow.

The package holds all of the pipeline's logic; the Snakemake rules in ``workflow/rules`` only call
the ``dc2flow`` command line.  Data flows one way through the stages::

    catalog -> partition -> render  (estimate, bundle, validation, registry come later)

Core modules (importable by every stage): :mod:`dc2flow.errors`, :mod:`dc2flow.config`,
:mod:`dc2flow.camera`, :mod:`dc2flow.io`.
"""

__version__ = "0.1.0"

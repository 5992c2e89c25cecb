"""ER-NeRF talking-portrait synthesis: the library behind the Snakemake workflow.

Every stage of the workflow is a function in a subpackage here and an ``ernerf``
subcommand (see ``ernerf_core.cli``), so it can be run and debugged without Snakemake.
"""

__version__ = "0.1.0"

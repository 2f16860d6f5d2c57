"""alflow: the science behind the active-learning workflow.

Everything the Snakemake rules do lives here as small, importable, tested
functions; the scripts in ``scripts/`` only translate ``snakemake.input`` /
``snakemake.output`` into calls of this package.
"""

# Keys under which reference labels are stored in extxyz files (Atoms.info /
# Atoms.arrays).  They are passed to mace-torch's training CLI explicitly.
ENERGY_KEY = "REF_energy"  # eV, Atoms.info
FORCES_KEY = "REF_forces"  # eV/Angstrom, Atoms.arrays, shape (n_atoms, 3)
STRESS_KEY = "REF_stress"  # eV/Angstrom^3, ASE sign convention, Atoms.info, Voigt (6,)

# Committee statistics written on every sampled frame (Atoms.info).
DEVIATION_KEY = "committee_force_dev"  # max over atoms of the committee force std, eV/Angstrom

# Why a structure could not be labelled (Atoms.info of frames in failed_*.xyz).
FAILURE_KEY = "label_failure"
# How a labelled structure was rescued, e.g. an SCF retried with safer settings
# (Atoms.info of labelled frames; absent when the first calculation succeeded).
RETRY_KEY = "label_retry"

# Written by the sample step on every saved frame: the committee-mean forces
# (Atoms.arrays, eV/Angstrom), compared with the reference labels afterwards to
# check how well the deviation predicted the real error; and, for the `fps`
# strategy, a per-structure MACE descriptor (Atoms.info, 1D array).
COMMITTEE_FORCES_KEY = "committee_forces"
# ... and its energy (eV, Atoms.info): the committee mean, and each member's
# (1D array), from which the audit estimates the energy error and its offset.
COMMITTEE_ENERGY_KEY = "committee_energy"
MEMBER_ENERGIES_KEY = "member_energies"
DESCRIPTOR_KEY = "mace_descriptor"

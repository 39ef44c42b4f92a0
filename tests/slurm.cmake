# The slurm provisioner against a real Slurm cluster on this host
# (tests/slurm.sh starts munged, slurmctld and two slurmd nodes).
atx_script_test(slurm)
set_tests_properties(slurm PROPERTIES TIMEOUT 600)

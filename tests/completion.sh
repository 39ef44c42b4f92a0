# The bash completion: commands, each command's options (from its --help),
# plugin names and fmf test names, in a real bash.
. "$ATX_SRC/tests/lib.sh"
mkdir -p bin
ln -s "$ATX" bin/atx
export PATH="$T/bin:$PATH"
complete_line() {  # complete_line WORDS...: the candidates for the last word
  bash --norc --noprofile -c '
    . "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
    _atx
    printf "%s\n" "${COMPREPLY[@]}"' _ "$ATX_SRC/share/completion/atx.bash" "$@"
}
expect_eq "atx r<TAB>" "$(complete_line atx r | sort)" "report
run"
expect_eq "atx ru<TAB>" "$(complete_line atx ru)" "run"
expect_eq "atx runn<TAB>" "$(complete_line atx runn | sort)" "runnable-run
runnable-run-recipe"
expect_eq "atx run --ti<TAB>" "$(complete_line atx run --ti)" "--timeout"
expect_eq "atx list --fo<TAB>" "$(complete_line atx list --fo)" "--format"
expect_eq "atx run --provisioner sl<TAB>" "$(complete_line atx run --provisioner sl)" "slurm:"
expect_eq "atx run --provisioner <TAB>" "$(complete_line atx run --provisioner '' | sort | tr '\n' ' ')" \
  "local: podman: slurm: ssh: "
expect_eq "atx bud reg<TAB>" "$(complete_line atx bud reg)" "register"
expect_eq "atx bud register --sock<TAB>" "$(complete_line atx bud register --sock)" "--socket-port"
expect_eq "atx run --report ht<TAB>" "$(complete_line atx run --report ht)" "html"
expect_eq "atx run --color al<TAB>" "$(complete_line atx run --color al)" "always"
expect_eq "atx run --sh<TAB>" "$(complete_line atx run --sh)" "--shard"
expect_eq "atx list --sh<TAB>" "$(complete_line atx list --sh)" "--shard"
expect_eq "atx report --me<TAB>" "$(complete_line atx report --me)" "--merge"
expect_eq "atx report --comp<TAB>" "$(complete_line atx report --comp)" "--compare"
expect_eq "atx run --fail<TAB>" "$(complete_line atx run --fail)" "--fail-on"
expect_eq "atx run --fail-on n<TAB>" "$(complete_line atx run --fail-on n)" "new"
expect_eq "atx run --quar<TAB>" "$(complete_line atx run --quar)" "--quarantine"
mkdir -p results/nightly
touch known.txt
expect_eq "atx run --compare res<TAB> (folders)" "$(complete_line atx run --compare res)" "results"
expect_eq "atx run --quarantine kn<TAB> (files)" "$(complete_line atx run --quarantine kn)" "known.txt"
expect_eq "atx run --shard 3/4<TAB>" "$(complete_line atx run --shard 3/4)" "3/4"
expect_eq "atx run --shard 1/<TAB>" "$(complete_line atx run --shard 1/ | wc -l)" "1"
mkdir -p tree/.fmf
echo 1 > tree/.fmf/version
printf '/alpha:\n    test: "true"\n/beta:\n    test: "true"\n' > tree/main.fmf
expect_eq "atx run tree --test /a<TAB>" "$(complete_line atx run tree --test /a)" "/alpha"
expect_eq "atx list --test what atx run --test selects" "$("$ATX" list tree --test /alpha)" "/alpha"
pass "bash completion: commands, options, plugins, fmf test names"

# bash completion for atx. Options come from each command's --help, so
# they stay in step with atx; plugin names from `atx plugins`, fmf test
# names from `atx list`.

_atx_options() {  # the options a command's --help names
    "$1" $2 --help 2>/dev/null | grep -oE -- '(^|[ [(,])--?[a-zA-Z][a-z0-9-]*' |
        grep -oE -- '--?[a-zA-Z][a-z0-9-]*' | sort -u
}

_atx() {
    local cur prev cmd atx=${COMP_WORDS[0]}
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[1]}
    local commands="run list report plugins bud help"
    # The Avocado runner plumbing only once its name is begun: `atx ru`
    # completes to run.
    local plumbing="runnable-run runnable-run-recipe capabilities"

    if [ "$COMP_CWORD" -eq 1 ]; then
        case $cur in
            runn*|cap*) COMPREPLY=($(compgen -W "$plumbing" -- "$cur")) ;;
            *) COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur")) ;;
        esac
        return
    fi
    case $cmd in
        help)
            COMPREPLY=($(compgen -W "$commands $plumbing" -- "$cur"))
            return ;;
        bud)
            if [ "$COMP_CWORD" -eq 2 ]; then
                COMPREPLY=($(compgen -W "register status add-test-run daemon version" -- "$cur"))
                return
            fi ;;
    esac
    case $prev in
        --plan|--junit|--jsonl|--html|--ctrf|--history|--password-file|--resume|-o|--results|--quarantine)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
        --plugin-path|--plan-dir|--merge|--compare)
            COMPREPLY=($(compgen -d -- "$cur"))
            return ;;
        --shard)
            # K/N: the first shard of the N already typed, else of 2.
            local n=${cur#*/}
            [[ $cur == */* && $n =~ ^[0-9]+$ ]] || n=2
            COMPREPLY=($(compgen -W "$(seq -s ' ' -f "%g/$n" 1 "$n")" -- "$cur"))
            return ;;
        --report)
            COMPREPLY=($(compgen -W "$("$atx" plugins 2>/dev/null | awk '$2 == "aggregator" {print $1}')" -- "$cur"))
            return ;;
        --provisioner)
            # A provisioner's name and its ':' (local:4, slurm:batch, ...).
            compopt -o nospace 2>/dev/null
            COMPREPLY=($(compgen -W "$("$atx" plugins 2>/dev/null | awk '$2 == "provisioner" {print $1 ":"}')" -- "$cur"))
            return ;;
        --color)
            COMPREPLY=($(compgen -W "auto always never" -- "$cur"))
            return ;;
        --fail-on)
            COMPREPLY=($(compgen -W "any new" -- "$cur"))
            return ;;
        --format|--output-format)
            COMPREPLY=($(compgen -W "text json" -- "$cur"))
            return ;;
        --filter)
            return ;;
        --test)
            # The test names of the fmf trees named on the line.
            local w trees=()
            for w in "${COMP_WORDS[@]:2}"; do
                [ -e "$w/.fmf/version" ] && trees+=("$w")
            done
            [ ${#trees[@]} -gt 0 ] &&
                COMPREPLY=($(compgen -W "$("$atx" list "${trees[@]}" 2>/dev/null | awk '{print $1}')" -- "$cur"))
            return ;;
    esac
    if [[ $cur == -* ]]; then
        local sub=$cmd
        [ "$cmd" = bud ] && sub="bud ${COMP_WORDS[2]}"
        COMPREPLY=($(compgen -W "$(_atx_options "$atx" "$sub")" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _atx atx

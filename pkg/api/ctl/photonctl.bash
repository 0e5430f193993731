# bash completion for photonctl, photon-init's control socket client.
# Installed in the initramfs as /usr/share/bash-completion/completions/photonctl;
# elsewhere: source <(photonctl completion bash)
# Container names come from "photonctl ps -q" on the same socket.

# _photonctl_flag_takes_arg VERB FLAG: does FLAG take a value?
_photonctl_flag_takes_arg() {
    case "$2" in
    --socket | -o | --output) return 0 ;;
    esac
    case "$1:$2" in
    logs:--tail | logs:--since | events:--since) return 0 ;;
    exec:-e | exec:--env | exec:-w | exec:--workdir | exec:-u | exec:--user) return 0 ;;
    stop:-t | stop:--timeout | restart:-t | restart:--timeout) return 0 ;;
    kill:-s | kill:--signal) return 0 ;;
    esac
    return 1
}

_photonctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local prev="${COMP_WORDS[COMP_CWORD-1]}"
    local verbs="ps inspect logs exec start stop restart kill events timeline poweroff reboot halt version completion help"
    local verb="" socket="" nargs=0 i word
    COMPREPLY=()

    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in
        --socket=*) socket="${word#--socket=}"; continue ;;
        --socket) socket="${COMP_WORDS[i+1]}" ;;
        esac
        if [[ $word == -* ]]; then
            # exec's flags end at its first argument.
            if [[ $verb == exec && $nargs -gt 0 ]]; then
                ((nargs++))
            elif [[ $word != *=* ]] && _photonctl_flag_takes_arg "$verb" "$word"; then
                ((i++))
            fi
        elif [[ -z $verb ]]; then
            verb="$word"
        else
            ((nargs++))
        fi
    done

    # The value of a flag.
    if [[ $prev == -* ]] && _photonctl_flag_takes_arg "$verb" "$prev" && ! [[ $verb == exec && $nargs -gt 0 ]]; then
        case "$prev" in
        -o | --output) COMPREPLY=($(compgen -W "table json" -- "$cur")) ;;
        --socket) COMPREPLY=($(compgen -f -- "$cur")) ;;
        -s | --signal) COMPREPLY=($(compgen -W "HUP INT QUIT KILL USR1 USR2 TERM CONT STOP WINCH PWR" -- "$cur")) ;;
        esac
        return 0
    fi

    local flags="--socket --output -o --help -h"
    case "$verb" in
    ps) flags+=" --quiet -q" ;;
    logs) flags+=" --follow -f --tail --since --timestamps -t" ;;
    exec) flags+=" --interactive -i --tty -t --env -e --workdir -w --user -u" ;;
    stop | restart) flags+=" --timeout -t" ;;
    kill) flags+=" --signal -s" ;;
    events) flags+=" --since" ;;
    esac
    if [[ $cur == -* ]] && ! [[ $verb == exec && $nargs -gt 0 ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return 0
    fi

    local names
    case "$verb" in
    "") COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
    help) [[ $nargs -eq 0 ]] && COMPREPLY=($(compgen -W "$verbs" -- "$cur")) ;;
    completion) [[ $nargs -eq 0 ]] && COMPREPLY=($(compgen -W "bash" -- "$cur")) ;;
    inspect | start | stop | restart | kill | logs | exec)
        if [[ $nargs -eq 0 || ($verb != logs && $verb != exec) ]]; then
            names="$("${COMP_WORDS[0]}" ${socket:+--socket "$socket"} ps -q 2>/dev/null)"
            COMPREPLY=($(compgen -W "$names" -- "$cur"))
        fi
        ;;
    esac
    return 0
}

complete -F _photonctl photonctl

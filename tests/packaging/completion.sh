#!/usr/bin/env bash
# shoalctl's bash completion (dist/completion/shoalctl), driven the way
# bash drives it: COMP_WORDS split at COMP_WORDBREAKS (so a URL arrives in
# pieces), COMP_CWORD, COMP_LINE, COMP_POINT, then _shoalctl, then
# COMPREPLY. Commands, subcommands, options per command, and volume names
# asked of a running shoald (with the --url and --token-file of the line);
# nothing, and quickly, when no daemon answers. Run once with the
# bash-completion package's helpers loaded (as installed) and once without.
# shellcheck source-path=SCRIPTDIR source=../integration/lib.sh
source "$(dirname "$0")/../integration/lib.sh"
COMPLETION="$SRCDIR/dist/completion/shoalctl"
[ -f "$COMPLETION" ] || fail "$COMPLETION is missing"

# One image each: shoald exports a file read-write only once.
for f in a b g; do random_file "$T/$f.img" $((1 << 20)); done
start_shoald -m 16M "alpha=$T/a.img" "beta=$T/b.img" "gamma.1=$T/g.img"
touch "$T/token-other"

# driver MODE LINE: print COMPREPLY (sorted, one per line) for LINE with
# the cursor at its end. MODE "plain" sources only our file; "bc" sources
# bash-completion first. Runs in a fresh bash, as a login shell would.
driver() {
    local mode=$1 line=$2
    bash --norc --noprofile -c '
        mode=$1 line=$2 shoalctl=$3 completion=$4
        if [ "$mode" = bc ]; then
            # shellcheck disable=SC1091
            source /usr/share/bash-completion/bash_completion >/dev/null 2>&1
        fi
        # shellcheck disable=SC1090
        source "$completion"
        # Split as readline does: at blanks, and each of =: is a word.
        COMP_WORDS=()
        for w in $line; do
            while [[ $w =~ ^([^=:]*)([=:])(.*)$ ]]; do
                [ -n "${BASH_REMATCH[1]}" ] && COMP_WORDS+=("${BASH_REMATCH[1]}")
                COMP_WORDS+=("${BASH_REMATCH[2]}")
                w=${BASH_REMATCH[3]}
            done
            [ -n "$w" ] && COMP_WORDS+=("$w")
        done
        [[ $line == *" " ]] && COMP_WORDS+=("")
        COMP_WORDS[0]=$shoalctl
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE="$shoalctl ${line#shoalctl }"
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        _shoalctl shoalctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}" | sed "/^\$/d" | sort
    ' _ "$mode" "$line" "$SHOALCTL" "$COMPLETION"
}

# expect MODE LINE WORD...: COMPREPLY is exactly these words.
expect() {
    local mode=$1 line=$2 got want
    shift 2
    got=$(driver "$mode" "$line" | tr '\n' ' ')
    want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || fail "[$mode] '$line': got '$got', want '$want'"
}

# has MODE LINE WORD...: COMPREPLY holds at least these words.
has() {
    local mode=$1 line=$2 got w
    shift 2
    got=$(driver "$mode" "$line")
    for w in "$@"; do
        grep -qxF -- "$w" <<<"$got" || fail "[$mode] '$line': '$w' not offered (got: $(tr '\n' ' ' <<<"$got"))"
    done
}

modes=(plain)
if [ -r /usr/share/bash-completion/bash_completion ]; then
    modes+=(bc)
else
    log "bash-completion is not installed: testing without its helpers only"
fi

conn="--url $URL --token-file $API_TOKEN_FILE"
for m in "${modes[@]}"; do
    expect "$m" "shoalctl " stats volumes volume enable disable invalidate prefetch cache mrc cluster reload top version help
    expect "$m" "shoalctl vol" volumes volume
    expect "$m" "shoalctl volume " add move remove
    expect "$m" "shoalctl volume move x --t" --timeout --to --token-file
    expect "$m" "shoalctl cache " resize
    expect "$m" "shoalctl cluster " status add remove
    expect "$m" "shoalctl stats --j" --json
    expect "$m" "shoalctl top --o" --once
    expect "$m" "shoalctl volume add x y --r" --readonly --raw
    expect "$m" "shoalctl volume add x y --n" --no-wait
    expect "$m" "shoalctl volume remove x --f" --force
    has "$m" "shoalctl prefetch alpha --" --wait --json --url --token-file --cacert
    has "$m" "shoalctl --" --url --token-file --cacert --timeout --version --help
    # Volume names from the daemon of the line's --url and --token-file.
    expect "$m" "shoalctl $conn enable " alpha beta gamma.1
    expect "$m" "shoalctl $conn volume remove g" gamma.1
    expect "$m" "shoalctl --json $conn stats a" alpha
    expect "$m" "shoalctl $conn invalidate alpha " # offsets: nothing to offer
    # Files after --token-file and for volume add's BACKING.
    expect "$m" "shoalctl --token-file $T/token-o" "$T/token-other"
    expect "$m" "shoalctl $conn volume add new $T/a.i" "$T/a.img"
done

# No daemon: no names, within the completion's 2 s bound.
dead=$(free_port)
t0=$SECONDS
for m in "${modes[@]}"; do
    expect "$m" "shoalctl --url http://127.0.0.1:$dead enable " # nothing
done
[ $((SECONDS - t0)) -le 6 ] || fail "completion without a daemon took $((SECONDS - t0)) s"
stop_shoald
log "PASS (${modes[*]})"

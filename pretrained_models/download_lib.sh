# Shared by the download_*.sh scripts of this folder (sourced, not run): argument parsing
# (--force, -h), the choice of curl or wget, and fetch URL DEST, which downloads into a temporary
# file beside DEST and renames it only on success, so that a failed or interrupted download
# leaves no partial file (and no directory it created). The sourcing script sets prog, base_url
# and timeout first. On failure: one line on stderr, non-zero exit; earlier files are kept.

stall_s=60
force=0

die() {
    echo "$prog: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h|--help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *)
            echo "$prog: unknown argument '$arg' (usage: $prog [--force])" >&2
            exit 2
            ;;
    esac
done

if ! [[ "$timeout" =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ "$timeout" =~ ^0+([.]0+)?$ ]]; then
    echo "$prog: DOWNLOAD_TIMEOUT must be a positive number of seconds, got '$timeout'" >&2
    exit 2
fi

if command -v curl >/dev/null 2>&1; then
    downloader=curl
elif command -v wget >/dev/null 2>&1; then
    downloader=wget
else
    die "neither curl nor wget is installed; nothing was written"
fi

# Cleanup state: the temporary file being written and the directories this script created
# for it (deepest last), removed again if the download does not complete.
tmp_file=""
new_dirs=()

cleanup() {
    if [[ -n "$tmp_file" ]]; then
        rm -f -- "$tmp_file"
        tmp_file=""
    fi
    local i
    for ((i = ${#new_dirs[@]} - 1; i >= 0; i--)); do
        rmdir -- "${new_dirs[i]}" 2>/dev/null || break
    done
    new_dirs=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# fetch URL DEST
fetch() {
    local url="$1" dest="$2"
    local dir rc d
    dir="$(dirname -- "$dest")"

    if [[ -e "$dest" && "$force" -eq 0 ]]; then
        echo "$dest already exists, skipping (use --force to download it again)"
        return 0
    fi

    # remember which directories are new, so that a failure can remove them again
    new_dirs=()
    d="$dir"
    while [[ ! -e "$d" && "$d" != "." && "$d" != "/" ]]; do
        new_dirs=("$d" "${new_dirs[@]+"${new_dirs[@]}"}")
        d="$(dirname -- "$d")"
    done
    mkdir -p -- "$dir" 2>/dev/null || die "could not create directory $dir; nothing was written"
    tmp_file="$(mktemp "$dir/.$(basename -- "$dest").part.XXXXXX" 2>/dev/null)" || {
        tmp_file=""
        cleanup
        die "could not create a temporary file in $dir; nothing was written"
    }

    echo "downloading $url -> $dest"
    rc=0
    if [[ "$downloader" == curl ]]; then
        local progress=(--silent)
        [[ -t 2 ]] && progress=(--progress-bar)
        curl --fail --location "${progress[@]}" --connect-timeout "$timeout" \
            --speed-limit 1 --speed-time "$stall_s" --output "$tmp_file" -- "$url" || rc=$?
    else
        wget --quiet --tries=1 --timeout="$timeout" --read-timeout="$stall_s" \
            --output-document="$tmp_file" -- "$url" || rc=$?
    fi
    local why=""
    if [[ "$rc" -ne 0 ]]; then
        why="offline or server down; $downloader exit status $rc"
    elif [[ ! -s "$tmp_file" ]]; then
        why="the server sent an empty file"
    fi
    if [[ -n "$why" ]]; then
        cleanup
        echo "$prog: could not download $url ($why); nothing was written" >&2
        exit 1
    fi

    # mktemp creates the file with mode 0600; give it the permissions a normal file would get
    chmod "$(printf '%o' $((0666 & ~0$(umask))))" -- "$tmp_file" 2>/dev/null
    mv -f -- "$tmp_file" "$dest" || { cleanup; die "could not move the download to $dest"; }
    tmp_file=""
    new_dirs=()
    echo "saved $dest"
}


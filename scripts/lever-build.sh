#!/usr/bin/env bash
# Builds stage06 with one of its levers undone, for measuring the lever
# against its absence (BASELINE in bench-http.sh), and prints the binary's
# path. The lever is a line of the source; the build is made from a
# scratch copy of the workspace with that one line changed, so the
# repository's code carries no switch for it.
#
#   scripts/lever-build.sh batch1       # one connection per CONN message (channel.rs: BATCH = 1)
#   scripts/lever-build.sh head-alone   # the head sent alone before a file of more than
#                                       # 64 KiB (http/session.rs: `more`), as stage06 did
#                                       # until the head before every file waited for it
#
# (Two levers measured with this script are gone from the code, and so
# from here: cork-all, every head held back, is now the default; report0,
# a load report for every change, too. The tables that removed them say
# at which commit their builds can still be made.)
#
#   BASELINE=$(scripts/lever-build.sh batch1) ROWS="1 2 5" scripts/bench-http.sh
#
# The binary is $TARGET/levers/NAME/release/stage06-full (its own target
# folder, so the scratch copy's builds never mix with the repository's).
. "$(dirname "$0")/lib.sh"

script_start 1 "$@"
name=$1
case $name in
    batch1)
        file=stage06-full/src/channel.rs
        edits=('s/^pub const BATCH: usize = 32;$/pub const BATCH: usize = 1;/'
            's/^pub const QUEUE_BOUND: usize = 4 \* BATCH;$/pub const QUEUE_BOUND: usize = 128;/') ;;
    head-alone)
        file=stage06-full/src/http/session.rs
        edits=('s/^            let more = file.is_some();$/            let more = file.is_some_and(|f| f.end - f.offset <= 64 * 1024);/') ;;
    *) echo "unknown lever $name: batch1 or head-alone" >&2; exit 1 ;;
esac

make_tmp
tar -C "$ROOT" --exclude=./target --exclude=./.git --exclude=./notes \
    --exclude=./stage06-full/www/big.bin -cf - . | tar -C "$tmp" -xf -
for e in "${edits[@]}"; do
    before=$(md5sum <"$tmp/$file")
    sed -i "$e" "$tmp/$file"
    if [ "$(md5sum <"$tmp/$file")" = "$before" ]; then
        echo "lever $name: '$e' changed nothing in $file (the constant moved?)" >&2
        exit 1
    fi
done
out="$TARGET/levers/$name"
(cd "$tmp" && CARGO_TARGET_DIR="$out" cargo build --release --quiet -p stage06-full) >&2
echo "$out/release/stage06-full"

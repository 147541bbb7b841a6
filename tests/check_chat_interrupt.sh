#!/bin/sh
# sibyl-chat and Ctrl-C: SIGINT once a reply is streaming (one that would run for seconds: a
# grammar that never ends, on the V3-vocabulary test model) cancels the reply, and the one-shot
# run ends with status 130 after reporting what it generated.
# usage: check_chat_interrupt.sh SIBYL_CHAT MODEL WORKDIR
chat=$1 model=$2 work=$3
printf 'root ::= "a" root\n' > "$work/never_ending.gbnf"
"$chat" --model "$model" --grammar "$work/never_ending.gbnf" --max-new 100000 --prompt Hi \
  > "$work/interrupt.out" 2> "$work/interrupt.err" &
pid=$!
tries=0
until grep -q aaaa "$work/interrupt.out"; do  # the reply is streaming
  tries=$((tries + 1))
  if [ $tries -gt 600 ] || ! kill -0 $pid 2>/dev/null; then
    echo "no reply streamed: $(cat "$work/interrupt.err")"; kill $pid 2>/dev/null; exit 1
  fi
  sleep 0.1
done
kill -INT $pid
wait $pid
rc=$?
if [ $rc -ne 130 ] || ! grep -q "cancelled; 0 reasoning + [1-9][0-9]* answer tokens" "$work/interrupt.err"; then
  echo "sibyl-chat interrupted: rc=$rc $(cat "$work/interrupt.err")"; exit 1
fi

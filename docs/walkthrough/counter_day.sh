#!/usr/bin/env bash
# A day at the counter with curl and jq: the same steps as counter_day.py (docs/api.md, "Walk-through").
#
#   export TERMINALD_URL=http://127.0.0.1:8631 TERMINALD_TOKEN="$(cat /var/lib/terminald-api/api-token)"
#   bash counter_day.sh open sale_online                  # central is up
#   bash counter_day.sh sale_outage revoke                # central is down
#   bash counter_day.sh settled followups refund reconcile events     # central is back
set -euo pipefail

URL=${TERMINALD_URL:-http://127.0.0.1:8631}
TOKEN=${TERMINALD_TOKEN:?the POS token: api.token_file}
OPERATOR='{"id": "op7", "name": "王芳"}'
TYPED_CARD='{"card_number": "A10000001", "ssn": "110101199001011234", "name": "张三"}'
declare -A ORDERS=(
  [A-1001]='[{"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": 2500}]'
  [A-1002]='[{"code": "XB02", "name": "布洛芬缓释胶囊", "qty": 0.5, "unit_price_fen": 999, "amount_fen": 500},
             {"code": "XC03", "name": "维生素C片", "qty": 1, "unit_price_fen": 1800, "amount_fen": 1800}]'
)
BODY=$(mktemp)  # the last answer's body
trap 'rm -f "$BODY"' EXIT
export LC_NUMERIC=C  # curl's seconds and printf agree on the decimal point


# call METHOD PATH [curl options]: the answer's body to $BODY; prints "STATUS SECONDS".
call() {
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 40 -o "$BODY" -w '%{http_code} %{time_total}' -X "$method" "$URL$path" \
       -H "Authorization: Bearer $TOKEN" "$@"
}


fail() {  # the problem+json in $BODY: type, title, status, detail, code
  echo "$1: $(jq -r '"\(.status) \(.code): \(.detail)"' "$BODY")" >&2
  exit 1
}


get() {  # get PATH [curl options]: the body of a 200, else fail
  local out
  out=$(call GET "$@")
  [[ ${out% *} == 200 ]] || fail "GET $1"
  cat "$BODY"
}


yuan() {
  local fen=$1 sign=""
  if ((fen < 0)); then sign=- fen=$((-fen)); fi
  printf '%s%d.%02d' "$sign" $((fen / 100)) $((fen % 100))
}


sale_of() {  # sale_of ORDER: the sale of the POS's order id (meta.pos_order_id); a revoke may carry it too
  get /v1/transactions -G --data-urlencode "pos_order_id=$1" | jq -ce '[.items[] | select(.kind == "settlement")] | .[0]'
}


card() {  # sets CARD for one sale: read it (the patient has 30 s to insert it), or type it in
  local out code
  out=$(call POST /v1/card/read -H 'Content-Type: application/json' -d '{"timeout_s": 30}')
  if [[ ${out% *} == 200 ]]; then
    echo "card: read in $(jq -r .reader "$BODY")"
    CARD=$(jq -c '{card_read_id}' "$BODY")  # proves the card was here, for one sale
    return
  fi
  code=$(jq -r .code "$BODY")
  [[ $code == no_reader || $code == no_card ]] || fail card  # unreadable, locked, busy: a person looks
  echo "card: $code, typed in"
  CARD=$(jq -nc --argjson card "$TYPED_CARD" '{card: $card}')
}


# record KEY BODY: POST a sale or a revoke. No answer or a 503: curl sends the very same request
# again (--retry); under the same key it is never recorded twice. Prints "STATUS SECONDS".
record() {
  call POST /v1/transactions --retry 2 --retry-connrefused -H "Idempotency-Key: $1" \
       -H 'Content-Type: application/json' -d "$2"
}


tell() {  # tell KEY "STATUS SECONDS": what to tell the patient, from the answer in $BODY
  local key=$1 code=${2% *} seconds=${2#* } status offline
  [[ $code == 200 || $code == 201 || $code == 202 ]] || fail "$key"  # 403 policy; 409, 422: fix it
  status=$(jq -r .status "$BODY") offline=$(jq -r .offline "$BODY")
  if [[ $status == settled && $offline == false ]]; then
    echo "$key: $code $status: fund $(yuan "$(jq .settlement.fund_paid_fen "$BODY")")" \
         "+ account $(yuan "$(jq .settlement.account_paid_fen "$BODY")")," \
         "patient pays $(yuan "$(jq .settlement.cash_paid_fen "$BODY")")"
  elif [[ $status == rejected && $offline == false ]]; then
    echo "$key: $code $status: refused by insurance ($(jq -r .rejection.message "$BODY")):" \
         "self-pay $(yuan "$(jq .total_fen "$BODY")") or void"
  else  # every 202 (and a repeat of one): an outage sale, whatever the reason
    printf '%s: %s %s (offline: %s) in %.2f s: patient pays %s in full and keeps the receipt\n' \
           "$key" "$code" "$status" "$(jq -r .offline_reason "$BODY")" "$seconds" \
           "$(yuan "$(jq .paid_at_counter_fen "$BODY")")"
  fi
}


sale_body() {  # sale_body ORDER: a settlement of the order, with the card of card()
  jq -nc --argjson card "$CARD" --argjson items "${ORDERS[$1]}" --argjson operator "$OPERATOR" \
     --arg order "$1" '$card + {items: $items, total_fen: ([$items[].amount_fen] | add),
                                operator: $operator, meta: {pos_order_id: $order}}'
}


print_document() {  # print_document TX_ID KEY [DOCUMENT]: print, then follow the job until it is out
  local out job state reprint
  out=$(call POST "/v1/transactions/$1/receipt" -H "Idempotency-Key: $2" \
             -H 'Content-Type: application/json' -d "{\"document\": \"${3:-receipt}\"}")
  [[ ${out% *} == 200 || ${out% *} == 202 ]] || fail "$2"  # a repeat of the key prints nothing more
  job=$(jq -r .job_id "$BODY")
  for _ in $(seq 60); do
    state=$(get "/v1/print-jobs/$job" | jq -r .state)
    [[ $state == queued || $state == printing ]] || break
    sleep 0.5
  done
  reprint=$(jq -r 'if .reprint then " (REPRINT)" else "" end' "$BODY")
  echo "$2: ${3:-receipt} $state$reprint"
  # unknown: look at the paper, then POST /v1/print-jobs/{id}/retry
  [[ $state == done ]] || { echo "$2: the printer says $(jq -r .error "$BODY")" >&2; exit 1; }
}


open() {  # morning: is the terminal there, and can it settle?
  echo "health: $(curl -sS "$URL/v1/health" | jq -r .status)"  # the one call without a token
  get /v1/status | jq -r '"terminal \(.terminal_id): \(.mode), \(.spool.pending) pending"'
  # the reference for every field: keep a copy with your code
  get /openapi.json | jq -r '"openapi \(.openapi): \(.paths | length) paths"'
}


sale_online() {  # central is up: central decides while the POS waits; the patient pays the cash part
  local body out
  card
  body=$(sale_body A-1001)
  out=$(record A-1001 "$body")  # the POS's order id is the Idempotency-Key
  tell A-1001 "$out"
  print_document "$(jq -r .id "$BODY")" A-1001-receipt
}


sale_outage() {  # central is down: committed and answered 202 at once; the patient pays in full
  local body out id found
  card
  body=$(sale_body A-1002)
  out=$(record A-1002 "$body")
  tell A-1002 "$out"
  id=$(jq -r .id "$BODY")
  # Say the POS lost that answer (it crashed). It asks by the key, without the body ...
  found=$(get /v1/transactions -G --data-urlencode idempotency_key=A-1002 | jq -r '.items[0].id')
  # ... or sends the request again under the same key, rebuilt or not (here the default kind is
  # now spelt out): the same request by its meaning, so 200 and the same sale, never a second one.
  out=$(record A-1002 "$(jq -c '{kind: "settlement"} + .' <<<"$body")")
  tell A-1002 "$out"
  [[ $found == "$id" && $(jq -r .id "$BODY") == "$id" ]] || { echo "A-1002: recorded twice?" >&2; exit 1; }
  print_document "$id" A-1002-receipt
}


revoke() {  # the patient of A-1001 brings the medicine back: revoke the settlement, print the revoke
  local sale body out back
  sale=$(sale_of A-1001)
  body=$(jq -nc --argjson sale "$sale" --argjson operator "$OPERATOR" \
            '{kind: "revoke", original_id: $sale.id, operator: $operator, meta: {pos_order_id: "A-1001"}}')
  out=$(record A-1001-revoke "$body")
  [[ ${out% *} == 20[012] ]] || fail A-1001-revoke  # 409 not_revocable: revoked already, or rejected
  back=$(jq '.paid_at_counter_fen - (.refund.paid_fen // 0)' <<<"$sale")
  echo "A-1001-revoke: ${out% *} $(jq -r .status "$BODY"): hand back $(yuan "$back")"
  print_document "$(jq -r .id "$BODY")" A-1001-revoke-receipt
}


settled() {  # central is back: the outage sale is uploaded in order and settles; print the notice
  local id deadline=$((SECONDS + 180))  # the uploader retries with a back-off of up to 60 s
  id=$(sale_of A-1002 | jq -r .id)
  until get "/v1/transactions/$id" | jq -e '.status != "pending"' >/dev/null; do
    ((SECONDS < deadline)) || { echo "A-1002: still pending after 180 s: is central back? (GET /v1/status)" >&2; exit 1; }
    sleep 1
  done
  echo "A-1002: $(jq -r .status "$BODY") after the outage: refund owed $(yuan "$(jq .refund_owed_fen "$BODY")")"
  print_document "$id" A-1002-notice notice
}


followups() {  # who staff must contact: refunds owed after an outage, rejections to settle
  local listed item order
  listed=$(get /v1/followups)
  while read -r item; do
    order=$(get "/v1/transactions/$(jq -r .id <<<"$item")" | jq -r '.meta.pos_order_id // "?"')
    jq -r --arg order "$order" --arg owed "$(yuan "$(jq .owed_fen <<<"$item")")" \
       '"followup: \(.reason) \($order): \($owed) by \(.deadline) (card \(.card.card_number), \(if .overdue then "overdue" else "not overdue" end))"' <<<"$item"
  done < <(jq -c '.items[]' <<<"$listed")
  echo "followups: $(jq .count <<<"$listed"), owed $(yuan "$(jq .owed_fen <<<"$listed")")"
}


refund() {  # the patient of A-1002 comes back: hand over the fund's share and record it, once
  local sale out body
  sale=$(sale_of A-1002)
  body=$(jq -nc --argjson sale "$sale" --argjson operator "$OPERATOR" \
            '{paid_fen: $sale.refund_owed_fen, operator: $operator}')
  out=$(call POST "/v1/transactions/$(jq -r .id <<<"$sale")/refund" -H 'Content-Type: application/json' -d "$body")
  # 409 refund_amount_mismatch: not what is owed; invalid_transition: recorded already
  [[ ${out% *} == 200 ]] || fail "A-1002 refund"
  echo "A-1002: refunded $(yuan "$(jq .refund.paid_fen "$BODY")"), owed now $(yuan "$(jq .refund_owed_fen "$BODY")");" \
       "followups: $(get /v1/followups | jq .count)"
}


reconcile() {  # evening: this terminal's figures of the day against central's
  local day rec
  day=$(sale_of A-1001 | jq -r '.business_time[:10]')  # the business day, in the sale's own offset
  rec=$(get /v1/reconciliation -G --data-urlencode "date=$day")
  echo "reconciliation $day: $(jq -r 'if .matches then "matches" else "DIFFERS" end' <<<"$rec"):" \
       "$(jq .local.count <<<"$rec") records, net $(yuan "$(jq .local.total_fen <<<"$rec")")," \
       "fund $(yuan "$(jq .local.fund_paid_fen <<<"$rec")")"
  jq -e .matches <<<"$rec" >/dev/null || { jq -c '.differences, .error' <<<"$rec" >&2; exit 1; }
}


# What happened, as events: the stream from the first stored one (since=0) until 2 s of quiet.
# A POS keeps the id of the last event it handled and resumes with Last-Event-ID.
events() {
  { curl -sS -N --speed-limit 1 --speed-time 2 "$URL/v1/events?since=0" -H "Authorization: Bearer $TOKEN" \
      2>/dev/null || true; } |
    awk '/^id: /{id=$2} /^event: /{name=$2} /^$/{if (name) print "event", id, name; name=""}'
}


STEPS=(open sale_online sale_outage revoke settled followups refund reconcile events)
(($#)) || { echo "usage: counter_day.sh STEP...; the steps of the day: ${STEPS[*]}" >&2; exit 2; }
for step in "$@"; do
  [[ " ${STEPS[*]} " == *" $step "* ]] || { echo "unknown step $step; the steps: ${STEPS[*]}" >&2; exit 2; }
done
for step in "$@"; do
  "$step"
done

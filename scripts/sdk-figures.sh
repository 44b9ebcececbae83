#!/usr/bin/env bash
# The README's per-language figures for the bot filter and the URL parser
# (Rust, Python, JavaScript): fuel and µs per event, component size, first
# compile, peak memory, and the second `sluice plugin test` run's time, over
# 2,000 page views shaped like the chain benchmark's (host/benches/chain.rs).
# Needs target/release/sluice and the components (scripts/build-plugins.sh,
# scripts/build-sdk-plugins.sh). Prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
events="$work/events.ndjson"
python3 - "$events" <<'PY'
import json, sys
# The chain bench's page views: ~10% bots, a path of 1-3 parts, 1-3 query
# parameters, ~300 bytes of data (the same lists, a simpler generator).
state = 0x5eed_cafe
def below(n):
    global state
    state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    return (state >> 33) % n
pick = lambda items: items[below(len(items))]
browsers = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"]
bots = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)"]
hosts = ["shop.example.com", "www.example.com", "blog.example.org", "app.example.io"]
sections = ["products", "blog", "account", "search", "category", "help"]
items = ["running-shoes", "winter-jacket", "orders", "settings", "2024", "gift-ideas", "returns", "checkout"]
params = [("utm_source", ["google", "newsletter", "twitter"]), ("utm_campaign", ["spring_sale", "launch", "retarget%2D7"]),
          ("q", ["running+shoes", "winter%20jacket", "gift"]), ("page", ["1", "2", "12"]), ("color", ["blue", "red"]), ("ref", ["home", "nav"])]
with open(sys.argv[1], "w") as out:
    for i in range(2000):
        path = "".join("/" + (pick(sections) if k == 0 else pick(items)) for k in range(1 + below(3)))
        first = below(len(params))
        query = "&".join("%s=%s" % (params[(first + k) % len(params)][0], pick(params[(first + k) % len(params)][1])) for k in range(1 + below(3)))
        ua = pick(bots) if below(10) == 0 else pick(browsers)
        data = {"email": "user%d@example.com" % i, "lang": "en-US", "ms": 20 + below(3000), "referrer": "https://www.google.com/",
                "ua": ua, "url": "https://%s%s?%s" % (pick(hosts), path, query), "user_id": "u_%d" % (10000 + below(90000))}
        out.write(json.dumps({"id": "pv%d" % i, "type": "page_view", "source": "web", "timestamp": 1767225600000 + 137 * i, "data": data}) + "\n")
PY

row() {
    local lang="$1" stage="$2" wasm="$3"
    local cache="$work/cache-$lang-$stage"
    local size second fuel us compile rss
    size=$(stat -c %s "$wasm")
    target/release/sluice plugin test "$wasm" --events "$events" --batch 256 --cache-dir "$cache" >"$work/out1" 2>"$work/err1" || true
    grep -q "compiled, and cached" "$work/err1" || { echo "unexpected: $(cat "$work/err1")" >&2; exit 1; }
    compile=$(grep -o 'cached in [^ ]* in [0-9.]* s' "$work/err1" | awk '{print $(NF-1)}')
    fuel=$(grep -o 'fuel per event avg [0-9]*' "$work/out1" | awk '{print $NF}')
    /usr/bin/time -f "%e %M" -o "$work/time2" target/release/sluice plugin test "$wasm" --events "$events" --batch 256 --cache-dir "$cache" >"$work/out2" 2>"$work/err2" || true
    second=$(tail -1 "$work/time2")
    grep -q "loaded the compiled component" "$work/err2" || { echo "unexpected: $(cat "$work/err2")" >&2; exit 1; }
    us=$(grep -o '[0-9.]* µs per event' "$work/err2" | awk '{print $1}')
    rss=$(echo "$second" | awk '{printf "%.0f", $2 / 1024}')
    printf '| %s | %s | %s | %s | %s MB | %s s | %s MB | %s s |\n' "$lang" "$stage" "$fuel" "$us" "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')" "$compile" "$rss" "$(echo "$second" | awk '{print $1}')"
}

echo "| language | stage | fuel per event | µs per event | component | first compile | peak RSS (2nd run) | 2nd \`plugin test\` run |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
row rust bot-filter target/wasm32-wasip2/release/bot_filter.wasm
row rust url-parts target/wasm32-wasip2/release/url_parts.wasm
row python bot-filter target/plugins-py/bot_filter.wasm
row python url-parts target/plugins-py/url_parts.wasm
row js bot-filter target/plugins-js/bot-filter.wasm
row js url-parts target/plugins-js/url-parts.wasm
echo "load: $(uptime | sed 's/.*load average: //')"

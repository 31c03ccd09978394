// Server-Sent Events over fetch(): EventSource cannot send the Authorization header.
// Parses the text/event-stream format (id/event/data/retry, comments), resumes with
// Last-Event-ID after a drop, and backs off up to 30 s between attempts.
"use strict";

window.TerminaldSSE = (function () {
  function parseBlock(block) {
    const ev = { id: null, event: "message", data: [], retry: null };
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "id") ev.id = value;
      else if (field === "event") ev.event = value;
      else if (field === "data") ev.data.push(value);
      else if (field === "retry" && /^\d+$/.test(value)) ev.retry = Number(value);
    }
    return ev;
  }

  // handlers: {onEvent(name, data, id), onState("ok"|"lost"), onUnauthorized()}
  function follow(url, token, handlers) {
    let lastId = null;
    let retryMs = 2000;
    let failures = 0;
    let stopped = false;
    let controller = null;

    async function once() {
      controller = new AbortController();
      const headers = { Authorization: "Bearer " + token(), Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401) { handlers.onUnauthorized(); stopped = true; return; }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      handlers.onState("ok");
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) !== -1) {
          const ev = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (ev.retry !== null) retryMs = ev.retry;
          if (ev.id !== null) lastId = ev.id;
          if (!ev.data.length) continue;
          let data = null;
          try { data = JSON.parse(ev.data.join("\n")); } catch (e) { data = ev.data.join("\n"); }
          handlers.onEvent(ev.event, data, ev.id);
        }
      }
    }

    async function loop() {
      while (!stopped) {
        try { await once(); } catch (e) { if (stopped) return; }
        if (stopped) return;
        handlers.onState("lost");
        failures += 1;
        const wait = Math.min(30000, retryMs * Math.pow(2, Math.min(failures - 1, 4)));
        await new Promise((r) => setTimeout(r, wait * (0.8 + Math.random() * 0.4)));
      }
    }

    loop();
    return { stop() { stopped = true; if (controller) controller.abort(); } };
  }

  return { follow, parseBlock };
})();

/** The `text/event-stream` wire format, read incrementally. */

/** Split a `text/event-stream` body into blocks, calling `onBlock({event, data, id, retry})`. */
export class SseParser {
  constructor(onBlock) {
    this.onBlock = onBlock;
    this.buffer = "";
    this.block = { event: "", data: null, id: null, retry: null };
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // A trailing "\r" may be half of "\r\n": keep it for the next chunk.
    this.buffer = lines.pop();
    if (this.buffer === "" && text.endsWith("\r")) this.buffer = "\r";
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "" || line === "\r") {
      const block = this.block;
      this.block = { event: "", data: null, id: null, retry: null };
      if (block.data !== null || block.id !== null || block.retry !== null) this.onBlock(block);
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.block.event = value;
    else if (field === "data") this.block.data = this.block.data === null ? value : `${this.block.data}\n${value}`;
    else if (field === "id") this.block.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.block.retry = Number(value);
  }
}

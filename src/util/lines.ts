/**
 * Split a text stream into lines as chunks arrive. A line longer than `maxLine` characters is
 * handed over unfinished rather than held forever (a child that never writes a newline).
 *
 * @example
 * const split = lineSplitter((line) => console.log('>', line));
 * stream.on('data', split.push);
 * stream.on('end', split.end);
 */
export function lineSplitter(
  onLine: (line: string) => void,
  maxLine = Number.POSITIVE_INFINITY,
): { push(chunk: string): void; end(): void } {
  let buf = '';
  return {
    push(chunk) {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onLine(line);
        nl = buf.indexOf('\n');
      }
      if (buf.length > maxLine) {
        const rest = buf;
        buf = '';
        onLine(rest);
      }
    },
    end() {
      if (buf === '') return;
      const rest = buf;
      buf = '';
      onLine(rest);
    },
  };
}

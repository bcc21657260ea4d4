/**
 * Plain-text tables for the terminal: columns padded to their widest cell, no borders, so that
 * the output stays readable and easy to grep or cut.
 *
 * @module
 */

/**
 * Lays out rows under a header, columns separated by two spaces, one line each (control characters
 * inside a cell, such as newlines or a terminal escape from a stored value, become spaces).
 *
 * @param header The column names.
 * @param rows The cells, one array per row, as many as the header.
 * @returns The lines, each ending in a newline; only the header when there are no rows.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const clean = rows.map((row) => row.map(printable));
  const widths = header.map((name, i) => Math.max(name.length, ...clean.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => i === cells.length - 1 ? cell : cell.padEnd(widths[i]!)).join("  ").trimEnd();
  return [header, ...clean].map((cells) => `${line(cells)}\n`).join("");
}

/** `text` with its control characters (newlines, terminal escapes) replaced by spaces. */
export function printable(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ");
}

/**
 * HTML built from a tagged template that escapes every interpolated value unless it is already
 * {@linkcode Html}: values from runs (workflow names, outputs, error messages) are untrusted, and
 * with this one rule none of them can become markup.
 *
 * @module
 */

/** A piece of markup that is safe to insert as is. */
export class Html {
  /** The markup. */
  readonly text: string;
  /** Wraps markup that is known to be safe (built by {@linkcode html}). */
  constructor(text: string) {
    this.text = text;
  }
  /** The markup. */
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** `text` escaped for an HTML text node or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** One interpolated value: markup as is, arrays joined, null/undefined/false as nothing, the rest escaped. */
function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

/**
 * A tagged template for markup: `html\`<td>${run.workflowName}</td>\`` escapes the name.
 *
 * @returns The markup.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

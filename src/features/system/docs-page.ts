import { ERROR_CODES, type ErrorCode } from '../../core/errors.ts'
import { NON_BLANK_TEXT, TEXT } from '../../http/text.ts'

/*
 * Renders the OpenAPI document as one self-contained HTML page: no script,
 * no CDN, so it works offline and under a strict Content-Security-Policy.
 */

type Json = Record<string, unknown>

const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!)

/** Escapes, then turns `code` spans into <code>, [links](/to/a/path) on this site into <a>, and blank lines into paragraphs. */
const prose = (s: unknown) =>
  s === undefined
    ? ''
    : esc(s)
        .split(/\n{2,}/)
        .map(
          (p) =>
            `<p>${p.replace(/`([^`]+)`/g, '<code>$1</code>').replace(/\[([^\]]+)\]\((\/[A-Za-z0-9._/-]*)\)/g, '<a href="$2">$1</a>')}</p>`,
        )
        .join('')

const slug = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')

function constraints(s: Json): string {
  const parts: string[] = []
  const keys: [string, string][] = [
    ['minLength', 'min length'],
    ['maxLength', 'max length'],
    ['minimum', 'min'],
    ['maximum', 'max'],
    ['minItems', 'min items'],
    ['maxItems', 'max items'],
    ['pattern', 'pattern'],
    ['default', 'default'],
  ]
  // The two text patterns are long and everywhere: named here, spelled out in the document.
  const named: Record<string, string> = {
    [TEXT.source]: 'text: no U+0000, no unpaired surrogate',
    [NON_BLANK_TEXT.source]: 'text, not blank: no U+0000, no unpaired surrogate',
  }
  for (const [k, label] of keys) {
    if (s[k] === undefined) continue
    if (k === 'pattern' && typeof s[k] === 'string' && named[s[k]]) parts.push(named[s[k]]!)
    else parts.push(`${label} ${esc(typeof s[k] === 'string' ? s[k] : JSON.stringify(s[k]))}`)
  }
  return parts.length ? ` <small>(${parts.join(', ')})</small>` : ''
}

function typeOf(s: Json | undefined, depth: number): string {
  if (!s) return '<i>any</i>'
  if (typeof s.$ref === 'string') {
    const name = s.$ref.split('/').pop()!
    return `<a href="#schema-${slug(name)}">${esc(name)}</a>`
  }
  if (Array.isArray(s.enum)) return s.enum.map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(' | ')
  if (s.const !== undefined) return `<code>${esc(JSON.stringify(s.const))}</code>`
  for (const k of ['anyOf', 'oneOf', 'allOf'] as const) {
    if (Array.isArray(s[k])) return (s[k] as Json[]).map((x) => typeOf(x, depth)).join(k === 'allOf' ? ' &amp; ' : ' | ')
  }
  const types = Array.isArray(s.type) ? (s.type as string[]) : s.type ? [s.type as string] : []
  const nullable = types.includes('null')
  const t = types.find((x) => x !== 'null')
  let out: string
  if (t === 'array') out = `${typeOf(s.items as Json, depth)}[]`
  else if (t === 'object' || s.properties) out = fields(s, depth + 1)
  else out = `<span class="t">${esc(t ?? 'any')}${s.format ? ` (${esc(s.format)})` : ''}</span>`
  return nullable ? `${out} | null` : out
}

function fields(s: Json, depth: number): string {
  const props = (s.properties ?? {}) as Record<string, Json>
  const required = new Set((s.required ?? []) as string[])
  const names = Object.keys(props)
  if (names.length === 0) return '<span class="t">object</span>'
  if (depth > 6) return '<span class="t">object</span>'
  const rows = names.map((name) => {
    const p = props[name]!
    const desc = p.description ? ` — ${prose(p.description).replace(/<\/?p>/g, '')}` : ''
    return `<li><code>${esc(name)}</code>${required.has(name) ? '' : '<span class="opt">?</span>'}: ${typeOf(p, depth)}${constraints(p)}${desc}</li>`
  })
  return `<ul class="fields">${rows.join('')}</ul>`
}

/** An example value as indented JSON. */
const example = (value: unknown, label: string) =>
  value === undefined
    ? ''
    : `<details class="ex" open><summary>${esc(label)}</summary><pre>${esc(JSON.stringify(value, null, 2))}</pre></details>`

function operation(method: string, path: string, op: Json): string {
  const id = `op-${slug(`${method} ${path}`)}`
  const params = (op.parameters ?? []) as Json[]
  const security = (op.security ?? []) as Json[]
  let html = `<section class="op" id="${id}"><h3><span class="m m-${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code></h3>`
  if (op.summary) html += `<p class="summary">${esc(op.summary)}</p>`
  html += prose(op.description)
  // An empty requirement among others makes the credentials optional.
  const required = security.filter((s) => Object.keys(s).length > 0)
  if (required.length)
    html += `<p class="auth">${required.length < security.length ? 'Takes' : 'Requires'} ${required
      .map((s) =>
        Object.keys(s)
          .map((k) => `<code>${esc(k)}</code>`)
          .join(' + '),
      )
      .join(' or ')}${required.length < security.length ? ', or no credentials' : ''}</p>`
  if (params.length) {
    html += '<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>'
    for (const p of params) {
      const shown = p.example ?? (p.schema as Json | undefined)?.example
      const eg = shown === undefined ? '' : `<p>Example: <code>${esc(shown)}</code></p>`
      html += `<tr><td><code>${esc(p.name)}</code>${p.required ? '' : '<span class="opt">?</span>'}</td><td>${esc(p.in)}</td><td>${typeOf(p.schema as Json, 0)}${constraints((p.schema ?? {}) as Json)}</td><td>${prose(p.description)}${eg}</td></tr>`
    }
    html += '</table>'
  }
  const body = op.requestBody as Json | undefined
  if (body) {
    const content = (body.content ?? {}) as Record<string, Json>
    for (const [type, media] of Object.entries(content))
      html += `<h4>Body <small>${esc(type)}</small></h4>${typeOf(media.schema as Json, 0)}${example(media.example, 'Example body')}`
  }
  html += '<h4>Responses</h4><dl class="responses">'
  for (const [status, res] of Object.entries((op.responses ?? {}) as Record<string, Json>)) {
    const content = (res.content ?? {}) as Record<string, Json>
    const media = Object.entries(content)[0]
    const codes =
      String(res.description ?? '')
        .match(/`([a-z_]+)`/g)
        ?.map((m) => m.slice(1, -1)) ?? []
    const described =
      codes.length && codes.every((c) => c in ERROR_CODES)
        ? codes.map((c) => `<a href="#error-${c}"><code>${c}</code></a>`).join(', ')
        : esc(res.description ?? '')
    const success = media && !status.startsWith('4') && !status.startsWith('5')
    html += `<dt class="s${status[0]}">${esc(status)}</dt><dd>${described}${success ? `<div class="schema">${typeOf(media[1].schema as Json, 0)}</div>${example(media[1].example, `Example answer (${status})`)}` : ''}</dd>`
  }
  return `${html}</dl></section>`
}

/** The API reference page for an OpenAPI 3.1 document. */
export function renderDocsPage(doc: Json): string {
  const info = (doc.info ?? {}) as Json
  const paths = (doc.paths ?? {}) as Record<string, Record<string, Json>>
  const tags = new Map<string, string[]>()
  const ops: string[] = []
  for (const [path, item] of Object.entries(paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue
      const tag = ((op.tags ?? ['Other']) as string[])[0]!
      const list = tags.get(tag) ?? []
      list.push(
        `<li><a href="#op-${slug(`${method} ${path}`)}"><span class="m m-${method}">${method.toUpperCase()}</span> ${esc(path)}</a></li>`,
      )
      tags.set(tag, list)
      ops.push(operation(method, path, op))
    }
  }
  const schemas = (((doc.components ?? {}) as Json).schemas ?? {}) as Record<string, Json>
  const schemaHtml = Object.entries(schemas)
    .map(
      ([name, s]) =>
        `<section id="schema-${slug(name)}"><h3>${esc(name)}</h3>${prose(s.description)}${typeOf({ ...s, description: undefined }, 0)}</section>`,
    )
    .join('')
  const errorRows = (Object.entries(ERROR_CODES) as [ErrorCode, { status: number; title: string }][])
    .map(([code, e]) => `<tr id="error-${code}"><td><code>${code}</code></td><td>${e.status}</td><td>${esc(e.title)}</td></tr>`)
    .join('')
  const nav = [...tags.entries()].map(([tag, items]) => `<h2>${esc(tag)}</h2><ul>${items.join('')}</ul>`).join('')

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(info.title)} — API reference</title>
<style>
body{margin:0;font:15px/1.5 system-ui,sans-serif;color:#1b1f24;display:grid;grid-template-columns:300px 1fr}
nav{position:sticky;top:0;height:100vh;overflow:auto;background:#f5f6f8;padding:1rem;border-right:1px solid #dde}
nav h2{font-size:.8rem;text-transform:uppercase;color:#667;margin:1rem 0 .3rem}nav ul{list-style:none;margin:0;padding:0}
nav a{color:inherit;text-decoration:none;display:block;padding:.1rem 0;font-size:.85rem}
main{padding:1.5rem 2.5rem;max-width:960px}code{font:13px ui-monospace,monospace;background:#f0f1f4;padding:0 .25rem;border-radius:3px}
.m{font:bold 11px ui-monospace,monospace;padding:.1rem .35rem;border-radius:3px;color:#fff;background:#667}
.m-get{background:#1f7a4d}.m-post{background:#2457c5}.m-patch{background:#a06400}.m-delete{background:#b3261e}
.op{border-top:1px solid #e3e5ea;padding:1rem 0}.summary{font-weight:600}.opt{color:#a06400}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #e3e5ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
ul.fields{margin:.2rem 0;padding-left:1.2rem}dl.responses dt{font-weight:bold;float:left;width:3.5rem}dl.responses dd{margin:0 0 .4rem 3.5rem}
pre{font:12px/1.4 ui-monospace,monospace;background:#f5f6f8;border:1px solid #e3e5ea;border-radius:4px;padding:.5rem;overflow:auto}
details.ex summary{cursor:pointer;color:#2457c5;font-size:.85rem}
.s2{color:#1f7a4d}.s4{color:#a06400}.s5{color:#b3261e}.t{color:#555}small{color:#667}.auth{color:#2457c5}
</style></head><body>
<nav><strong>${esc(info.title)}</strong> <small>${esc(info.version)}</small>${nav}<h2>Reference</h2><ul><li><a href="#schemas">Schemas</a></li><li><a href="#errors">Error codes</a></li><li><a href="/openapi.json">openapi.json</a></li></ul></nav>
<main><h1>${esc(info.title)}</h1>${prose(info.description)}
${ops.join('\n')}
<h2 id="schemas">Schemas</h2>${schemaHtml}
<h2 id="errors">Error codes</h2><p>Every error is <code>application/problem+json</code> with a stable <code>code</code>.</p>
<table><tr><th>code</th><th>status</th><th>meaning</th></tr>${errorRows}</table>
</main></body></html>`
}

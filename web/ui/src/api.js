// The HTTP API client. Every failure becomes an APIError whose message names the request and
// the server's error text; callers show it (see errors.js), never swallow it.

/** An API request failed: HTTP error, network error, or an answer that is not the envelope. */
export class APIError extends Error {
  constructor(message, status = 0, type = '') {
    super(message);
    this.name = 'APIError';
    this.status = status;
    this.type = type;
  }
}

/**
 * Calls the API and returns the envelope ({status, data, freshness?}).
 * @param {string} path e.g. "/api/v1/status"
 * @param {RequestInit} [init]
 */
export async function api(path, init = {}) {
  const method = init.method || 'GET';
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new APIError(`${method} ${path}: the server did not answer (${e.message})`);
  }
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new APIError(`${method} ${path}: HTTP ${res.status}, not a JSON answer: ${text.slice(0, 200)}`, res.status);
  }
  if (body.status !== 'success') {
    throw new APIError(`${method} ${path}: ${body.errorType || 'error'}: ${body.error || `HTTP ${res.status}`}`, res.status, body.errorType);
  }
  return body;
}

/** Runs a query (the JSON body of POST /api/v1/query); resolves to {data: {columns, rows}, freshness}. */
export function query(q) {
  return api('/api/v1/query', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(q) });
}

/** Lints a YAML model; resolves to the diagnostics [{line, col, message, text}]. */
export async function lint(file, yaml) {
  const body = await api(`/api/v1/lint?file=${encodeURIComponent(file)}`, { method: 'POST', headers: { 'Content-Type': 'application/yaml' }, body: yaml });
  return body.data.diagnostics;
}

/** The curl command that sends q exactly as the UI does. */
export function curlFor(q) {
  const url = `${location.origin}/api/v1/query`;
  const body = JSON.stringify(q).replaceAll("'", "'\\''");
  return `curl -s '${url}' -H 'Content-Type: application/json' -d '${body}'`;
}

/** The URL of q's answer as CSV (GET /api/v1/query?format=csv&query=...). */
export function csvURL(q) {
  return `/api/v1/query?format=csv&query=${encodeURIComponent(JSON.stringify(q))}`;
}

/** The URL of `path` on an admin endpoint given as host:port or as a URL. */
export function adminUrl(endpoint: string, path: string): string {
  const base = /^https?:\/\//.test(endpoint) ? endpoint.replace(/\/+$/, '') : `http://${endpoint}`;
  return `${base}${path}`;
}

/** Why a request to an admin endpoint failed, as short as the error allows (ECONNREFUSED, HTTP 500, …). */
export function unreachableReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string } }).cause?.code;
  return cause ?? (error instanceof Error ? error.message : String(error));
}

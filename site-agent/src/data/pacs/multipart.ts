/** One body part of a multipart/related answer: its headers (lower-case names) and its bytes, untouched. */
export interface MultipartPart {
  headers: Record<string, string>;
  body: Uint8Array;
}

export class MultipartError extends Error {
  override readonly name = 'MultipartError';
}

/** The value of one parameter of a Content-Type header (quoted or not), case-insensitive in its name. */
export function contentTypeParameter(contentType: string, name: string): string | undefined {
  // Parameters are `; name=value` or `; name="quoted; value"`; a quoted value may hold semicolons.
  const pattern = /;\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  for (const match of contentType.matchAll(pattern)) {
    if ((match[1] ?? '').toLowerCase() !== name.toLowerCase()) continue;
    const raw = (match[2] ?? '').trim();
    return raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw;
  }
  return undefined;
}

/** The media type without parameters, lower case: `multipart/related`. */
export function mediaType(contentType: string): string {
  return (contentType.split(';')[0] ?? '').trim().toLowerCase();
}

const CRLF_CRLF = Buffer.from('\r\n\r\n');

/**
 * Splits a multipart body (RFC 2046) into its parts without decoding them: DICOM bytes may contain anything,
 * including text that looks like a boundary line, so a part with Content-Length is cut by its length and only
 * a part without one is cut at the next delimiter.
 */
export function parseMultipart(body: Uint8Array, contentType: string): MultipartPart[] {
  const boundary = contentTypeParameter(contentType, 'boundary');
  if (!boundary) throw new MultipartError(`multipart answer without a boundary in its Content-Type (${contentType})`);
  const data = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const delimiter = Buffer.from(`--${boundary}`);
  const nextDelimiter = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may start the body or follow a preamble (which ends in CRLF).
  let at = 0;
  if (!data.subarray(0, delimiter.length).equals(delimiter)) {
    const first = data.indexOf(nextDelimiter);
    if (first < 0) throw new MultipartError('multipart answer has no part (its boundary never appears)');
    at = first + 2;
  }
  const parts: MultipartPart[] = [];
  for (;;) {
    at += delimiter.length;
    if (data[at] === 0x2d && data[at + 1] === 0x2d) return parts; // "--": the closing delimiter
    // Transport padding (spaces or tabs) may follow a delimiter before its CRLF.
    while (data[at] === 0x20 || data[at] === 0x09) at++;
    if (data[at] !== 0x0d || data[at + 1] !== 0x0a) throw new MultipartError('multipart answer is malformed: no line break after a boundary');
    at += 2;
    const headerEnd = data.indexOf(CRLF_CRLF, at);
    // A part with no headers starts straight with the blank line.
    const noHeaders = data[at] === 0x0d && data[at + 1] === 0x0a;
    if (headerEnd < 0 && !noHeaders) throw new MultipartError('multipart answer is truncated: a part has no end of headers');
    const headers: Record<string, string> = {};
    let bodyStart: number;
    if (noHeaders) {
      bodyStart = at + 2;
    } else {
      for (const line of data.subarray(at, headerEnd).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      bodyStart = headerEnd + 4;
    }
    const declared = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
    let bodyEnd: number;
    if (declared !== undefined && Number.isSafeInteger(declared) && declared >= 0 && data.subarray(bodyStart + declared, bodyStart + declared + nextDelimiter.length).equals(nextDelimiter)) {
      bodyEnd = bodyStart + declared;
    } else {
      bodyEnd = data.indexOf(nextDelimiter, bodyStart);
      if (bodyEnd < 0) throw new MultipartError('multipart answer is truncated: a part has no closing boundary');
    }
    parts.push({ headers, body: new Uint8Array(data.buffer, data.byteOffset + bodyStart, bodyEnd - bodyStart) });
    at = bodyEnd + 2;
  }
}

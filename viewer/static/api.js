// The server's JSON API, with the signed-in token (localStorage "cim.token") when there is one.
// Errors come back in one shape, {code, message, detail}: thrown as ApiError.

const TOKEN_KEY = "cim.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(secret = token()) {
  return secret ? { Authorization: `Bearer ${secret}` } : {};
}

export async function getJson(url, { secret, signal } = {}) {
  const response = await fetch(url, {
    headers: { Accept: "application/json", ...authHeaders(secret) },
    signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_e) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// A multipart upload through XMLHttpRequest, for its upload progress events; fields are the
// form's other fields (replaces: the id of the source the model replaces).
export function uploadFile(file, onProgress, fields = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/uploads");
    const secret = token();
    if (secret) xhr.setRequestHeader("Authorization", `Bearer ${secret}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_e) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { message: "network error" })));
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [key, value] of Object.entries(fields)) {
      if (value instanceof File) form.append(key, value, value.name);
      else if (value !== null && value !== undefined) form.append(key, String(value));
    }
    xhr.send(form);
  });
}

// Follows a job until it is done or failed: its server-sent events read through fetch (an
// EventSource cannot send the token), falling back to polling. onUpdate gets each job document.
export async function followJob(jobId, onUpdate) {
  let last = null;
  try {
    const response = await fetch(`/api/jobs/${jobId}/events`, {
      headers: { Accept: "text/event-stream", ...authHeaders() },
    });
    if (!response.ok || !response.body) throw new ApiError(response.status, null);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = chunk
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).trim())
          .join("\n");
        if (!data) continue;
        last = JSON.parse(data);
        onUpdate(last);
        if (last.status === "done" || last.status === "failed") return last;
      }
    }
  } catch (_e) {
    // the stream broke (a proxy, an old browser): poll instead
  }
  for (;;) {
    last = await getJson(`/api/jobs/${jobId}`);
    onUpdate(last);
    if (last.status === "done" || last.status === "failed") return last;
    await new Promise((r) => setTimeout(r, 700));
  }
}

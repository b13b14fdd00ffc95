// The web channel's page. Bot text is never parsed as HTML: it is turned into DOM nodes
// (textContent only) by a small Markdown subset renderer below.
(function () {
  "use strict";

  var ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  var USER_KEY = "dow.web.user_id";
  var PASS_KEY = "dow.web.password";
  var log = document.getElementById("log");
  var input = document.getElementById("input");
  var form = document.getElementById("composer");
  var statusEl = document.getElementById("status");
  var login = document.getElementById("login");
  var loginForm = document.getElementById("login-form");
  var loginError = document.getElementById("login-error");
  var passwordInput = document.getElementById("password");

  function randomId(prefix) {
    var bytes = new Uint8Array(8);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return prefix + Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function store(kind) { try { return window[kind]; } catch (e) { return null; } }
  var local = store("localStorage");
  var session = store("sessionStorage");
  function getItem(s, k) { try { return s ? s.getItem(k) : null; } catch (e) { return null; } }
  function setItem(s, k, v) { try { if (s) { s.setItem(k, v); } } catch (e) { /* private mode */ } }

  // ?user=<id> in the address picks a user id (handy for several windows); else the remembered one.
  var fromUrl = new URLSearchParams(window.location.search).get("user");
  var userId = fromUrl && ID_RE.test(fromUrl) ? fromUrl : getItem(local, USER_KEY);
  if (!userId || !ID_RE.test(userId)) { userId = randomId("u_"); }
  setItem(local, USER_KEY, userId);
  var lastIdKey = "dow.web.last_event." + userId;
  var password = getItem(session, PASS_KEY) || "";

  // ------------------------------------------------------------------ rendering
  function isSafeUrl(url) {
    return /^https?:\/\/[^\s]+$/i.test(url) || /^\/media\/[A-Za-z0-9_-]+\/[A-Za-z0-9_-]+$/.test(url);
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // Inline subset: `code`, **bold**, ![alt](http(s) url), [text](http(s) url). Anything else is text.
  var INLINE_SOURCE = /(`[^`\n]+`)|(\*\*[^*\n][^\n]*?\*\*)|(!\[[^\]\n]*\]\([^)\s]+\))|(\[[^\]\n]+\]\([^)\s]+\))/.source;

  function renderInline(text, parent) {
    var last = 0;
    var match;
    // A fresh regex per call: bold text is rendered recursively, and a shared /g regex
    // would have its lastIndex reset under the outer loop.
    var INLINE = new RegExp(INLINE_SOURCE, "g");
    while ((match = INLINE.exec(text)) !== null) {
      if (match.index > last) { parent.appendChild(document.createTextNode(text.slice(last, match.index))); }
      var token = match[0];
      if (match[1]) {
        parent.appendChild(el("code", null, token.slice(1, -1)));
      } else if (match[2]) {
        var strong = el("strong");
        renderInline(token.slice(2, -2), strong);
        parent.appendChild(strong);
      } else {
        var image = token.charAt(0) === "!";
        var parts = /^!?\[([^\]]*)\]\(([^)\s]+)\)$/.exec(token);
        var label = parts[1];
        var url = parts[2];
        if (!isSafeUrl(url)) {
          parent.appendChild(document.createTextNode(token));
        } else if (image) {
          var img = el("img");
          img.alt = label;
          img.src = url;
          img.loading = "lazy";
          parent.appendChild(img);
        } else {
          var a = el("a", null, label);
          a.href = url;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          parent.appendChild(a);
        }
      }
      last = INLINE.lastIndex;
    }
    if (last < text.length) { parent.appendChild(document.createTextNode(text.slice(last))); }
  }

  // Block subset: ``` fenced code; everything else goes through renderInline.
  function renderMarkdown(text, parent) {
    var chunks = String(text).split(/```/);
    chunks.forEach(function (chunk, i) {
      if (i % 2 === 1 && i < chunks.length - 1) {
        var body = chunk.replace(/^[A-Za-z0-9_+-]*\n/, "");
        var pre = el("pre");
        pre.appendChild(el("code", null, body.replace(/\n$/, "")));
        parent.appendChild(pre);
      } else {
        renderInline(i % 2 === 1 ? "```" + chunk : chunk, parent);
      }
    });
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addBubble(cls) {
    var bubble = el("div", "msg " + cls);
    log.appendChild(bubble);
    return bubble;
  }

  function showUser(text) {
    var bubble = addBubble("user pending");
    renderMarkdown(text, bubble);
    scrollDown();
    return bubble;
  }

  function showBot(data) {
    var type = String(data.type || "TEXT").toUpperCase();
    var content = data.content;
    var bubble = addBubble(type === "ERROR" ? "bot error" : "bot");
    if ((type === "IMAGE_URL" || type === "IMAGE") && typeof content === "string" && isSafeUrl(content)) {
      var img = el("img");
      img.alt = "image";
      img.src = content;
      img.addEventListener("load", scrollDown);
      bubble.appendChild(img);
    } else if ((type === "FILE" || type === "VIDEO") && content && typeof content.url === "string" && isSafeUrl(content.url)) {
      if (type === "VIDEO" || /^video\//.test(content.mime || "")) {
        var video = el("video");
        video.controls = true;
        video.src = content.url;
        video.style.maxWidth = "100%";
        bubble.appendChild(video);
      } else if (/^image\//.test(content.mime || "")) {
        var fileImg = el("img");
        fileImg.alt = String(content.name || "image");
        fileImg.src = content.url;
        bubble.appendChild(fileImg);
      }
      var link = el("a", null, "\u2B73 " + String(content.name || "file"));
      link.href = content.url;
      link.setAttribute("download", String(content.name || "file"));
      bubble.appendChild(link);
    } else if (type === "VIDEO_URL" && typeof content === "string" && isSafeUrl(content)) {
      var v = el("video");
      v.controls = true;
      v.src = content;
      v.style.maxWidth = "100%";
      bubble.appendChild(v);
    } else {
      renderMarkdown(typeof content === "string" ? content : JSON.stringify(content), bubble);
    }
    scrollDown();
  }

  // ------------------------------------------------------------------ network
  function authHeaders() {
    var headers = { "Content-Type": "application/json" };
    if (password) { headers.Authorization = "Bearer " + password; }
    return headers;
  }

  function setStatus(state, text) {
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  var waitingForPassword = [];
  function askPassword(wrong) {
    loginError.hidden = !wrong;
    login.hidden = false;
    passwordInput.focus();
    return new Promise(function (resolve) { waitingForPassword.push(resolve); });
  }
  loginForm.addEventListener("submit", function (e) {
    e.preventDefault();
    password = passwordInput.value;
    setItem(session, PASS_KEY, password);
    login.hidden = true;
    var waiting = waitingForPassword;
    waitingForPassword = [];
    waiting.forEach(function (resolve) { resolve(); });
  });

  function postJson(path, body) {
    return fetch(path, { method: "POST", headers: authHeaders(), body: JSON.stringify(body) }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (data) {
        if (res.status === 401 && data.auth === "password") {
          return askPassword(!!password).then(function () { return postJson(path, body); });
        }
        return { status: res.status, data: data };
      });
    });
  }

  var source = null;
  var retryDelay = 1000;
  var retryTimer = null;

  function connect() {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (source) { source.close(); source = null; }
    setStatus("connecting", "connecting…");
    postJson("/token", { user_id: userId }).then(function (res) {
      if (res.status !== 200) { throw new Error(res.data.message || "token refused"); }
      var query = [];
      if (res.data.token) { query.push("token=" + encodeURIComponent(res.data.token)); }
      var lastId = getItem(local, lastIdKey);
      if (lastId) { query.push("last_event_id=" + encodeURIComponent(lastId)); }
      var es = new EventSource("/sse/" + encodeURIComponent(userId) + (query.length ? "?" + query.join("&") : ""));
      source = es;
      es.onopen = function () { retryDelay = 1000; setStatus("open", "connected"); };
      es.onmessage = function (event) {
        // No repeats to filter: a reconnect names the last id it saw (Last-Event-ID, or
        // last_event_id from storage) and the server sends only what came after it.
        if (event.lastEventId) { setItem(local, lastIdKey, event.lastEventId); }
        var data;
        try { data = JSON.parse(event.data); } catch (e) { return; }
        showBot(data);
      };
      es.onerror = function () {
        // EventSource retries by itself (sending Last-Event-ID) unless the server refused it.
        if (es.readyState === EventSource.CLOSED) { scheduleReconnect(); }
        else { setStatus("connecting", "reconnecting…"); }
      };
    }).catch(function () { scheduleReconnect(); });
  }

  function scheduleReconnect() {
    if (source) { source.close(); source = null; }
    setStatus("error", "offline, retrying…");
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  function send(text) {
    var bubble = showUser(text);
    var msgId = randomId("m_");
    var attempt = function (tries) {
      return postJson("/message", { user_id: userId, message: text, msg_id: msgId }).then(function (res) {
        if (res.status === 200) { bubble.classList.remove("pending"); return; }
        bubble.classList.remove("pending");
        showBot({ type: "ERROR", content: res.data.message || ("error " + res.status) });
      }, function () {
        // Network error: retry with the same msg_id, the server counts it once.
        if (tries > 0) { return new Promise(function (r) { setTimeout(r, 1500); }).then(function () { return attempt(tries - 1); }); }
        bubble.classList.remove("pending");
        showBot({ type: "ERROR", content: "The message could not be sent; check the connection." });
      });
    };
    return attempt(3);
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = input.value;
    if (!text.trim()) { return; }
    input.value = "";
    input.style.height = "";
    send(text);
  });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  });
  input.addEventListener("input", function () {
    input.style.height = "";
    input.style.height = Math.min(input.scrollHeight, window.innerHeight * 0.4) + "px";
  });
  document.getElementById("new-chat").addEventListener("click", function () {
    userId = randomId("u_");
    setItem(local, USER_KEY, userId);
    lastIdKey = "dow.web.last_event." + userId;
    log.textContent = "";
    connect();
  });
  window.addEventListener("online", function () { if (!source) { connect(); } });

  window.chatUserId = function () { return userId; };
  connect();
  input.focus();
})();

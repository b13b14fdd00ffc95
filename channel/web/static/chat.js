// The web channel's page. Bot answers are Markdown (marked), sanitized (DOMPurify) before
// they touch the DOM, code highlighted (highlight.js); raw HTML in an answer is shown as
// text. Everything else the page shows (user text, user id) goes in as text, never HTML.
(function () {
  "use strict";

  var MAX_ID = 256; // the server's cap (channel/web/ids.py)
  var USER_KEY = "dow.web.user_id";
  var PASS_KEY = "dow.web.password";
  var log = document.getElementById("log");
  var input = document.getElementById("input");
  var form = document.getElementById("composer");
  var statusEl = document.getElementById("status");
  var whoEl = document.getElementById("who");
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

  // Any text is a user id (an e-mail address, a name in Chinese...), as in the original.
  // "." and ".." are refused: browsers resolve them away in a URL path (/sse/<id>).
  function usableId(id) {
    return typeof id === "string" && id.trim() !== "" && id.length <= MAX_ID && id !== "." && id !== "..";
  }

  // ?user=<id> in the address picks a user id (handy for several windows); else the remembered one.
  var fromUrl = new URLSearchParams(window.location.search).get("user");
  var userId = usableId(fromUrl) ? fromUrl : getItem(local, USER_KEY);
  if (!usableId(userId)) { userId = randomId("u_"); }
  setItem(local, USER_KEY, userId);
  var password = getItem(session, PASS_KEY) || "";

  // ------------------------------------------------------------------ rendering
  function isSafeUrl(url) {
    return /^https?:\/\/[^\s]+$/i.test(url) || /^\/media\/[^\s]+$/.test(url);
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  var markdown = window.marked && new window.marked.Marked({
    gfm: true,
    breaks: true, // a chat answer's single newlines are line breaks
    // HTML written in an answer is shown as the text it is, not interpreted.
    renderer: { html: function (token) { return escapeHtml(token.text); } }
  });
  if (window.DOMPurify) {
    window.DOMPurify.addHook("afterSanitizeAttributes", function (node) {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      }
    });
  }

  // Markdown -> sanitized HTML in `bubble`. Without the libraries, plain text.
  function renderMarkdown(text, bubble) {
    if (!markdown || !window.DOMPurify) {
      bubble.textContent = text;
      return;
    }
    bubble.classList.add("md");
    bubble.innerHTML = window.DOMPurify.sanitize(markdown.parse(String(text)), { FORBID_TAGS: ["style", "form", "input"] });
    if (window.hljs) {
      Array.prototype.forEach.call(bubble.querySelectorAll("pre code"), function (code) {
        var lang = /\blanguage-([\w+-]+)/.exec(code.className);
        if (!lang || window.hljs.getLanguage(lang[1])) { window.hljs.highlightElement(code); }
      });
    }
  }

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function addBubble(cls) {
    var bubble = el("div", "msg " + cls);
    log.insertBefore(bubble, typing.parentNode === log ? typing : null);
    return bubble;
  }

  function showUser(text, pending) {
    var bubble = addBubble(pending ? "user pending" : "user");
    bubble.textContent = text;
    scrollDown();
    return bubble;
  }

  // "The bot is writing" from a question until the first piece of its answer.
  var typing = el("div", "msg bot typing");
  typing.setAttribute("aria-label", "the bot is typing");
  typing.appendChild(el("span"));
  typing.appendChild(el("span"));
  typing.appendChild(el("span"));
  function showTyping() { log.appendChild(typing); scrollDown(); }
  function hideTyping() { if (typing.parentNode) { typing.parentNode.removeChild(typing); } }

  function fillBot(bubble, data) {
    var type = String(data.type || "TEXT").toUpperCase();
    var content = data.content;
    // IMAGE, FILE, VIDEO: `content` is the link (a string, as in the original); `url` beside it.
    var url = typeof data.url === "string" ? data.url : content;
    bubble.textContent = "";
    if ((type === "IMAGE_URL" || type === "IMAGE") && typeof url === "string" && isSafeUrl(url)) {
      var img = el("img");
      img.alt = "image";
      img.src = url;
      img.addEventListener("load", scrollDown);
      bubble.appendChild(img);
    } else if ((type === "FILE" || type === "VIDEO") && typeof url === "string" && isSafeUrl(url)) {
      var mime = String(data.mime || "");
      var name = String(data.name || url.split("/").pop() || "file");
      if (type === "VIDEO" || /^video\//.test(mime)) {
        var video = el("video");
        video.controls = true;
        video.src = url;
        video.style.maxWidth = "100%";
        bubble.appendChild(video);
      } else if (/^image\//.test(mime)) {
        var fileImg = el("img");
        fileImg.alt = name;
        fileImg.src = url;
        bubble.appendChild(fileImg);
      }
      var link = el("a", null, "\u2B73 " + name);
      link.href = url;
      link.setAttribute("download", name);
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
  }

  function showBot(data) {
    var type = String(data.type || "TEXT").toUpperCase();
    var bubble = addBubble(type === "ERROR" ? "bot error" : "bot");
    fillBot(bubble, data);
    scrollDown();
  }

  // Answers growing while the bot streams them: stream id -> {bubble, text}.
  var streams = {};

  function onPartial(data) {
    var id = String(data.stream || "");
    var entry = streams[id];
    if (data.done) { // withdrawn: no final text will come
      if (entry && entry.bubble.parentNode) { entry.bubble.parentNode.removeChild(entry.bubble); }
      delete streams[id];
      return;
    }
    hideTyping();
    if (!entry) { entry = streams[id] = { bubble: addBubble("bot streaming"), text: "" }; }
    entry.text = entry.text.slice(0, Number(data.offset) || 0) + String(data.delta || "");
    renderMarkdown(entry.text, entry.bubble);
    scrollDown();
  }

  function onFinal(data) {
    hideTyping();
    var entry = data.stream ? streams[data.stream] : null;
    if (!entry) { showBot(data); return; }
    delete streams[data.stream];
    entry.bubble.classList.remove("streaming");
    fillBot(entry.bubble, data);
    scrollDown();
  }

  // ------------------------------------------------------------------ network
  function authHeaders() {
    var headers = { "Content-Type": "application/json" };
    if (password) { headers.Authorization = "Bearer " + utf8Bytes(password); }
    return headers;
  }

  // fetch() refuses a header with a character past U+00FF, and sends the others as one
  // latin-1 byte each: the password goes as its UTF-8 bytes, one character per byte, and
  // the server reads it as UTF-8 (NFC). So a password in any script works.
  function utf8Bytes(text) {
    var bytes = new TextEncoder().encode(text.normalize ? text.normalize("NFC") : text);
    var out = "";
    for (var i = 0; i < bytes.length; i++) { out += String.fromCharCode(bytes[i]); }
    return out;
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
  var lastEventId = ""; // of the newest event shown: a new stream starts after it
  // Events shown (history included), by id and time. A replay from an id the server cannot
  // place repeats some: shown once. The time is in the key because a state store restored from
  // a backup numbers new events with ids already used.
  var shownIds = {};
  var shownOrder = [];
  var MAX_SHOWN = 2000;
  function firstTime(data) {
    if (!data || typeof data.id !== "string") { return true; }
    var id = data.id + "|" + String(data.timestamp);
    if (Object.prototype.hasOwnProperty.call(shownIds, id)) { return false; }
    shownIds[id] = true;
    shownOrder.push(id);
    if (shownOrder.length > MAX_SHOWN) { delete shownIds[shownOrder.shift()]; }
    return true;
  }
  function forgetShown() { shownIds = {}; shownOrder = []; }
  var historyShown = false;
  // Each connect() gets a number; a slower one that a later call overtook (a double click
  // on "New chat", the online event during a retry) stops instead of opening a second
  // stream, which would show every answer twice.
  var connectGen = 0;

  function userPath(prefix) { return prefix + encodeURIComponent(userId); }

  // The conversation so far, kept by the server: a reloaded page shows it again.
  function showHistory(token) {
    var url = userPath("/history/") + (token ? "?token=" + encodeURIComponent(token) : "");
    return fetch(url, { headers: authHeaders() }).then(function (res) { return res.json(); }).then(function (data) {
      if (data.status !== "success") { return; }
      log.textContent = "";
      (data.messages || []).forEach(function (entry) {
        if (entry.role === "user") { showUser(String(entry.content)); return; }
        if (firstTime(entry)) { showBot(entry); }
      });
      lastEventId = data.last_event_id || "";
    }).catch(function () { /* the live stream still works */ }).then(function () { historyShown = true; });
  }

  function connect() {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (source) { source.close(); source = null; }
    setStatus("connecting", "connecting…");
    var gen = ++connectGen;
    var token = "";
    postJson("/token", { user_id: userId }).then(function (res) {
      if (gen !== connectGen) { return null; }
      if (res.status !== 200) { throw new Error(res.data.message || "token refused"); }
      token = res.data.token || "";
      return historyShown ? null : showHistory(token);
    }).then(function () {
      if (gen !== connectGen) { return; }
      if (source) { source.close(); source = null; }
      var query = [];
      if (token) { query.push("token=" + encodeURIComponent(token)); }
      if (lastEventId) { query.push("last_event_id=" + encodeURIComponent(lastEventId)); }
      var es = new EventSource(userPath("/sse/") + (query.length ? "?" + query.join("&") : ""));
      source = es;
      es.onopen = function () { retryDelay = 1000; setStatus("open", "connected"); };
      // A reconnect names the last id it saw (Last-Event-ID, or last_event_id) and the server
      // sends what came after it; an id already shown is still skipped (see firstTime). The id
      // is read from the data: `event.lastEventId` stays set on the events that have none (the
      // growing answer's).
      function handler(show) {
        return function (event) {
          if (event.lastEventId) { lastEventId = event.lastEventId; }
          var data;
          try { data = JSON.parse(event.data); } catch (e) { return; }
          if (!firstTime(data)) { return; }
          show(data);
        };
      }
      es.onmessage = handler(onFinal);
      es.addEventListener("partial", handler(onPartial));
      // The message was handled and no answer comes (a plugin kept it).
      es.addEventListener("end", handler(function () { hideTyping(); }));
      es.onerror = function () {
        // EventSource retries by itself (sending Last-Event-ID) unless the server refused it.
        if (es.readyState === EventSource.CLOSED) { scheduleReconnect(); }
        else { setStatus("connecting", "reconnecting…"); }
      };
    }).catch(function () { if (gen === connectGen) { scheduleReconnect(); } });
  }

  function scheduleReconnect() {
    if (source) { source.close(); source = null; }
    setStatus("error", "offline, retrying…");
    retryTimer = setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  function send(text) {
    var bubble = showUser(text, true);
    showTyping();
    var msgId = randomId("m_");
    var attempt = function (tries) {
      return postJson("/message", { user_id: userId, message: text, msg_id: msgId }).then(function (res) {
        bubble.classList.remove("pending");
        if (res.status === 200 && res.data.status === "success") {
          if (res.data.handled === false) { hideTyping(); } // the rules let it pass: no answer comes
          return;
        }
        hideTyping();
        showBot({ type: "ERROR", content: res.data.detail || res.data.message || ("error " + res.status) });
      }, function () {
        // Network error: retry with the same msg_id, the server counts it once.
        if (tries > 0) { return new Promise(function (r) { setTimeout(r, 1500); }).then(function () { return attempt(tries - 1); }); }
        bubble.classList.remove("pending");
        hideTyping();
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
  function showWho() { whoEl.textContent = userId; whoEl.title = "Your user id: " + userId; }

  document.getElementById("new-chat").addEventListener("click", function () {
    userId = randomId("u_");
    setItem(local, USER_KEY, userId);
    lastEventId = "";
    forgetShown();
    historyShown = false;
    streams = {};
    log.textContent = "";
    showWho();
    connect();
  });
  window.addEventListener("online", function () { if (!source) { connect(); } });
  // A page left for another keeps its stream open in the back/forward cache, holding one
  // of the browser's few connections to this server: close it, reopen on the way back.
  window.addEventListener("pagehide", function () {
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (source) { source.close(); source = null; }
  });
  window.addEventListener("pageshow", function (e) { if (e.persisted) { connect(); } });

  // The login QR of another channel of this daemon (wx) while it waits for a scan: asked for
  // with the password header (an <img> cannot send one), shown from a blob: URL, fetched again
  // when the server names a new QR, hidden once none waits.
  var qrBox = document.getElementById("login-qr");
  var qrImg = document.getElementById("login-qr-img");
  var qrChannel = document.getElementById("login-qr-channel");
  var QR_POLL = 2000;
  var shownQr = "";
  function hideQr() {
    qrBox.hidden = true;
    shownQr = "";
    qrImg.removeAttribute("data-qr");
    if (qrImg.src) { URL.revokeObjectURL(qrImg.src); qrImg.removeAttribute("src"); }
  }
  function showQr(login) {
    var key = login.channel + ":" + login.qr;
    if (key === shownQr) { return null; }
    return fetch("/login/qr/" + encodeURIComponent(login.channel), { headers: authHeaders(), cache: "no-store" })
      .then(function (res) { return res.status === 200 ? res.blob() : null; })
      .then(function (blob) {
        if (!blob) { hideQr(); return; }
        if (qrImg.src) { URL.revokeObjectURL(qrImg.src); }
        qrImg.src = URL.createObjectURL(blob);
        qrImg.setAttribute("data-qr", key);
        qrChannel.textContent = login.channel;
        shownQr = key;
        qrBox.hidden = false;
      });
  }
  function watchLogin() {
    fetch("/login/status", { headers: authHeaders(), cache: "no-store" }).then(function (res) {
      // 401: the password is not known yet (the chat asks for it); look again later.
      return res.status === 200 ? res.json() : { watch: true, logins: null };
    }).then(function (data) {
      var login = data.logins && data.logins[0];
      if (data.logins && !login) { hideQr(); }
      return Promise.resolve(login ? showQr(login) : null).then(function () { return data.watch; });
    }).then(function (watch) {
      if (watch) { setTimeout(watchLogin, QR_POLL); }
    }, function () { setTimeout(watchLogin, QR_POLL * 2); });
  }

  window.chatUserId = function () { return userId; };
  showWho();
  connect();
  watchLogin();
  input.focus();
})();

// kaspi-identity portal: progressive enhancement only. Every page works without this file;
// the server's checks stay the authority. It adds the eye toggle, the live checklist from
// the policy JSON endpoint (GET /auth/policy), per-field errors as you type, and the hint
// that the keyboard is probably in the Cyrillic layout.
(function () {
  "use strict";
  var body = document.body;

  // -- the eye toggle: a real button after each password field -----------------------------
  var SVG = '<svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true" focusable="false" ' +
    'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">' +
    '<path d="M1 12s4-7 11-7 11 7 11 7-4 7-11 7S1 12 1 12z"/><circle cx="12" cy="12" r="3"/>' +
    '<line class="slash" x1="3" y1="21" x2="21" y2="3"/></svg>';
  function addEye(input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "eye";
    button.setAttribute("aria-controls", input.id);
    button.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-label", body.dataset.show);
    button.title = body.dataset.show;
    button.innerHTML = SVG;
    button.addEventListener("click", function () {
      var shown = input.type === "password";
      input.type = shown ? "text" : "password";
      button.setAttribute("aria-pressed", shown ? "true" : "false");
      button.setAttribute("aria-label", shown ? body.dataset.hide : body.dataset.show);
      button.title = button.getAttribute("aria-label");
    });
    input.parentNode.appendChild(button);
  }

  // -- the rules the browser can check; the rest (history, strength, ...) the server checks --
  function has(text, characters) {
    for (var i = 0; i < text.length; i++) {
      if (characters.indexOf(text[i]) !== -1) return true;
    }
    return false;
  }
  function count(text, characters) {
    var n = 0;
    for (var i = 0; i < text.length; i++) if (characters.indexOf(text[i]) !== -1) n++;
    return n;
  }
  var LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  var DIGITS = "0123456789";
  function length(text) { return Array.from(text.normalize("NFKC")).length; }
  function classOf(doc, name) {
    var found = null;
    (doc.classes.required || []).forEach(function (c) { if (c["class"] === name) found = c; });
    return found;
  }
  function alphabetOk(doc, text) {
    var kind = doc.alphabet.kind;
    var allowed;
    if (kind === "latin_alnum") allowed = LATIN + DIGITS;
    else if (kind === "latin_alnum_special") allowed = LATIN + DIGITS + doc.classes.special_characters;
    else if (doc.alphabet.characters) allowed = doc.alphabet.characters;
    else return null;
    for (var i = 0; i < text.length; i++) if (allowed.indexOf(text[i]) === -1) return false;
    return true;
  }
  function checker(doc, key, params) {
    var min = doc.length.min, max = doc.length.max;
    var simple = {
      "requirement.length_range": function (t) { var n = length(t); return n >= min && (max === null || n <= max); },
      "requirement.min_length": function (t) { return length(t) >= min; },
      "requirement.max_length": function (t) { return t.length > 0 && (max === null || length(t) <= max); },
      "requirement.max_repeat": function (t) {
        if (!t) return false;
        var limit = doc.max_repeat, run = 1;
        for (var i = 1; i < t.length; i++) { run = t[i] === t[i - 1] ? run + 1 : 1; if (run > limit) return false; }
        return true;
      }
    };
    if (simple[key]) return simple[key];
    var m = /^requirement\.(upper|lower|digit|special)$/.exec(key);
    if (m) {
      var cls = classOf(doc, m[1]);
      var chars = cls ? cls.characters : (m[1] === "special" ? doc.classes.special_characters : "");
      var need = cls ? cls.count : 1;
      return function (t) { return count(t, chars) >= need; };
    }
    if (key.indexOf("requirement.alphabet") === 0) {
      return function (t) { return t.length > 0 && alphabetOk(doc, t) !== false; };
    }
    if (key === "requirement.min_classes" && doc.classes.min_classes) {
      return function (t) {
        var sets = [LATIN.slice(0, 26), LATIN.slice(26), DIGITS, doc.classes.special_characters];
        return sets.filter(function (s) { return has(t, s); }).length >= doc.classes.min_classes;
      };
    }
    return null; // known only to the server (history, strength, blocklist, personal data)
  }

  function wantsLatin(doc) {
    var kind = doc.alphabet.kind;
    if (kind && kind.indexOf("latin") === 0) return true;
    return (doc.classes.required || []).some(function (c) { return c["class"] === "upper" || c["class"] === "lower"; });
  }

  function liveChecklist(input) {
    var box = document.getElementById(input.dataset.checklist);
    var hint = document.getElementById(input.id + "-layout");
    if (!box) return;
    fetch(box.dataset.policy, { headers: { "Accept-Language": box.dataset.lang, "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (doc) {
        var items = box.querySelectorAll("li[data-key]");
        var checks = doc.requirements.map(function (req) { return checker(doc, req.key, req.params); });
        var latin = wantsLatin(doc);
        function update() {
          var value = input.value;
          items.forEach(function (li, i) {
            var check = checks[i];
            var state = check === null ? "server" : value === "" ? "unknown" : (check(value) ? "yes" : "no");
            li.dataset.met = state;
            li.querySelector(".state").textContent =
              state === "yes" ? " — " + body.dataset.met :
              state === "no" ? " — " + body.dataset.notMet :
              state === "server" ? " — " + body.dataset.server : "";
          });
          if (hint) hint.textContent = latin && /[\u0400-\u04FF]/.test(value) ? input.dataset.layoutHint : "";
        }
        input.addEventListener("input", update);
        box.dataset.ready = "true";
        update();
      })
      .catch(function () { /* the list stays as the server rendered it */ });
  }

  // -- per-field errors as you type: the repeat field says when it does not match ----------
  function liveConfirmation(input) {
    var first = document.getElementById(input.dataset.confirms);
    var out = document.getElementById(input.id + "-error");
    if (!first || !out) return;
    function update() {
      var bad = input.value !== "" && input.value !== first.value;
      var served = out.querySelector("[data-code]:not([data-live])");
      if (bad) {
        out.innerHTML = "";
        var p = document.createElement("p");
        p.dataset.code = "confirmation_mismatch";
        p.dataset.live = "true";
        p.textContent = input.dataset.mismatch;
        out.appendChild(p);
        input.setAttribute("aria-invalid", "true");
      } else if (!served) {
        out.innerHTML = "";
        input.removeAttribute("aria-invalid");
      }
    }
    input.addEventListener("change", update);
    input.addEventListener("input", function () { if (input.getAttribute("aria-invalid")) update(); });
    first.addEventListener("input", function () { if (input.value) update(); });
  }

  document.querySelectorAll("input[type=password]").forEach(function (input) {
    addEye(input);
    if (input.dataset.checklist) liveChecklist(input);
    if (input.dataset.confirms) liveConfirmation(input);
  });

  // A refused form: move the focus to the first field in error so a keyboard user lands there.
  var invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) invalid.focus();
})();

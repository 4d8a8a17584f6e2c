// The array builder's grids (settings, T5). The form's fields stay what is saved: each
// microinverter's array select and row and column inputs. This script draws every array's
// grid from them and writes them back when a microinverter is clicked and then a cell (or
// dragged onto it), so the page saves the same way with or without it. A microinverter
// dropped on an occupied cell swaps places with the one there; the tray takes it off.
(function () {
  "use strict";

  var MAX_SIDE = 50;

  function init() {
    var form = document.getElementById("array-builder");
    if (!form) {
      return;
    }
    var tray = document.getElementById("unplaced");
    var micros = {};
    var order = [];
    var selected = null;

    Array.prototype.forEach.call(form.querySelectorAll("tr[data-micro]"), function (row) {
      var id = row.getAttribute("data-micro");
      micros[id] = {
        serial: row.getAttribute("data-serial"),
        short: row.getAttribute("data-short"),
        array: row.querySelector("select"),
        row: row.querySelector("input[data-part=row]"),
        column: row.querySelector("input[data-part=column]"),
      };
      order.push(id);
    });

    function slots() {
      return Array.prototype.slice.call(form.querySelectorAll("fieldset[data-slot]"));
    }

    function field(key, part) {
      return form.elements[key + "_" + part];
    }

    function side(key, part) {
      var input = field(key, part);
      var n = input ? parseInt(input.value, 10) : NaN;
      return n >= 1 && n <= MAX_SIDE ? n : 0;
    }

    function deleted(key) {
      var box = field(key, "delete");
      return Boolean(box && box.checked);
    }

    function placeOf(id) {
      var m = micros[id];
      return {
        slot: m.array.value,
        row: parseInt(m.row.value, 10) - 1,
        column: parseInt(m.column.value, 10) - 1,
      };
    }

    function cellKey(slot, row, column) {
      return slot + ":" + row + ":" + column;
    }

    // Cell → the microinverter the form puts there (the first one, if two claim it).
    function occupants() {
      var cells = {};
      order.forEach(function (id) {
        var p = placeOf(id);
        if (p.slot && !(cellKey(p.slot, p.row, p.column) in cells)) {
          cells[cellKey(p.slot, p.row, p.column)] = id;
        }
      });
      return cells;
    }

    function chip(id) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "chip" + (id === selected ? " selected" : "");
      b.textContent = micros[id].short;
      b.title = micros[id].serial;
      b.draggable = true;
      b.setAttribute("data-micro", id);
      b.setAttribute("aria-pressed", id === selected ? "true" : "false");
      return b;
    }

    // What the grids are drawn from; redrawn only when it changes, so that a field's
    // "change" on blur does not replace the chip being clicked under the pointer.
    var drawn = null;

    function state() {
      var parts = [String(selected)];
      slots().forEach(function (fieldset) {
        var key = fieldset.getAttribute("data-slot");
        parts.push(key, side(key, "rows"), side(key, "columns"), deleted(key));
      });
      order.forEach(function (id) {
        var m = micros[id];
        parts.push(id, m.array.value, m.row.value, m.column.value);
      });
      return parts.join("|");
    }

    function refresh() {
      if (state() !== drawn) {
        render();
      }
    }

    function render() {
      drawn = state();
      var cells = occupants();
      var shown = {};
      slots().forEach(function (fieldset) {
        var key = fieldset.getAttribute("data-slot");
        var box = fieldset.querySelector(".builder-grid");
        var rows = side(key, "rows");
        var columns = side(key, "columns");
        box.textContent = "";
        if (!rows || !columns || deleted(key)) {
          return;
        }
        var table = document.createElement("table");
        table.className = "array-grid builder";
        for (var r = 0; r < rows; r += 1) {
          var tr = document.createElement("tr");
          for (var c = 0; c < columns; c += 1) {
            var td = document.createElement("td");
            var id = cells[cellKey(key, r, c)];
            td.className = "cell drop" + (id ? "" : " empty");
            td.setAttribute("data-slot", key);
            td.setAttribute("data-row", String(r));
            td.setAttribute("data-column", String(c));
            if (id) {
              td.appendChild(chip(id));
              shown[id] = true;
            }
            tr.appendChild(td);
          }
          table.appendChild(tr);
        }
        box.appendChild(table);
      });
      // The tray holds what no grid shows: not placed, or placed where no cell is.
      Array.prototype.forEach.call(tray.querySelectorAll(".chip"), function (old) {
        tray.removeChild(old);
      });
      order.forEach(function (id) {
        if (!shown[id]) {
          var c = chip(id);
          if (micros[id].array.value) {
            c.className += " astray";
          }
          tray.appendChild(c);
        }
      });
    }

    function set(id, slot, row, column) {
      var m = micros[id];
      m.array.value = slot;
      m.row.value = slot ? String(row + 1) : "";
      m.column.value = slot ? String(column + 1) : "";
    }

    function place(id, slot, row, column) {
      var from = placeOf(id);
      var other = occupants()[cellKey(slot, row, column)];
      if (other && other !== id) {
        set(other, from.slot, from.row, from.column);
      }
      set(id, slot, row, column);
      selected = null;
      render();
    }

    function unplace(id) {
      set(id, "", 0, 0);
      selected = null;
      render();
    }

    function targetCell(node) {
      while (node && node !== form) {
        if (node.nodeName === "TD" && node.hasAttribute("data-slot")) {
          return node;
        }
        node = node.parentNode;
      }
      return null;
    }

    function inTray(node) {
      while (node && node !== form) {
        if (node === tray) {
          return true;
        }
        node = node.parentNode;
      }
      return false;
    }

    function dropAt(id, node) {
      var td = targetCell(node);
      if (td) {
        place(
          id,
          td.getAttribute("data-slot"),
          parseInt(td.getAttribute("data-row"), 10),
          parseInt(td.getAttribute("data-column"), 10)
        );
      } else if (inTray(node)) {
        unplace(id);
      }
    }

    form.addEventListener("click", function (event) {
      var target = event.target;
      var chipId = target.getAttribute && target.getAttribute("data-micro");
      if (chipId && target.classList.contains("chip")) {
        if (selected && selected !== chipId && targetCell(target)) {
          // A microinverter is in hand: it goes where this one is (they swap).
          dropAt(selected, target);
          return;
        }
        selected = selected === chipId ? null : chipId;
        render();
        return;
      }
      if (selected && (targetCell(target) || inTray(target))) {
        dropAt(selected, target);
      }
    });

    form.addEventListener("dragstart", function (event) {
      var id = event.target.getAttribute && event.target.getAttribute("data-micro");
      if (id && event.dataTransfer) {
        event.dataTransfer.setData("text/plain", id);
        event.dataTransfer.effectAllowed = "move";
      }
    });

    form.addEventListener("dragover", function (event) {
      if (targetCell(event.target) || inTray(event.target)) {
        event.preventDefault();
      }
    });

    form.addEventListener("drop", function (event) {
      var id = event.dataTransfer && event.dataTransfer.getData("text/plain");
      if (id && micros[id]) {
        event.preventDefault();
        dropAt(id, event.target);
      }
    });

    // Typing in the fields redraws the grids; a renamed array is renamed in the selects.
    form.addEventListener("input", function (event) {
      var name = event.target.name || "";
      var match = /^(a\d+|n\d+)_name$/.exec(name);
      if (match) {
        var fieldset = form.querySelector("fieldset[data-slot=" + match[1] + "]");
        var label = event.target.value || (fieldset && fieldset.getAttribute("data-legend")) || "";
        Array.prototype.forEach.call(
          form.querySelectorAll("option[value=" + match[1] + "]"),
          function (option) {
            option.textContent = label;
          }
        );
      }
      refresh();
    });
    form.addEventListener("change", refresh);

    form.classList.add("enhanced");
    render();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

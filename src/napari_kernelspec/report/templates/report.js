// Conveniences only: the report reads the same with JavaScript off.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  // Click an image to enlarge it; click again (or press Escape) to close.
  document.addEventListener("click", function (event) {
    var frame = event.target.closest ? event.target.closest("figure.zoom") : null;
    var open = document.querySelector("figure.zoom.enlarged");
    if (open && open !== frame) { open.classList.remove("enlarged"); }
    if (frame) { frame.classList.toggle("enlarged"); }
  });
  document.addEventListener("keydown", function (event) {
    var open = document.querySelector("figure.zoom.enlarged");
    if (event.key === "Escape" && open) { open.classList.remove("enlarged"); }
  });
  // Click a column heading to sort a table by it (numbers numerically, text by locale).
  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    var number = parseFloat(raw);
    return isNaN(number) || !/^[-+0-9.eE]+$/.test(raw) ? raw.toLowerCase() : number;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.setAttribute("title", "sort by this column");
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(table.tHead.rows[0].cells, function (other) {
          other.removeAttribute("aria-sort");
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index), y = cellValue(b, index);
          var order = typeof x === "number" && typeof y === "number" ? x - y
            : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();

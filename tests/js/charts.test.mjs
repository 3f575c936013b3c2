// web/js/charts.js's pure part under node's test runner (run by tests/unit/test_client_js.py):
// the busiest slot of the hour x weekday heatmap names it, and an empty grid has none.
import assert from "node:assert/strict";
import { test } from "node:test";
import { busiest } from "../../web/js/charts.js";

test("the busiest slot of a 7 x 24 grid; the first of equals; none when empty", () => {
  const grid = Array.from({ length: 7 }, () => Array(24).fill(0));
  assert.equal(busiest(grid), null);
  grid[1][14] = 3; // Tuesday 14:00
  grid[4][9] = 3; // Friday 09:00, as busy but later in the week
  grid[6][23] = 1;
  assert.deepEqual(busiest(grid), { weekday: 1, hour: 14, count: 3 });
  grid[6][23] = 4;
  assert.deepEqual(busiest(grid), { weekday: 6, hour: 23, count: 4 });
});

-- Questions in the six families the embedded tiny-reasoner was trained on, each with the
-- text its answer must contain (to count correct answers on screen and in the CI figures).
local M = {}

-- The shop items keep the prices the model learned; the words are from its training set.
local ITEMS = { { "shield", 25 }, { "lantern", 15 }, { "apple", 3 }, { "torch", 5 }, { "sword", 12 },
                { "arrow", 2 }, { "bread", 4 }, { "map", 9 }, { "bow", 30 }, { "rope", 6 }, { "helmet", 18 },
                { "potion", 7 } }
local WORDS = { "adventure", "apple", "banana", "barrel", "castle", "mississippi", "scroll", "strawberry",
                "tavern", "treasure", "wizard" }

local function pick(list, rng) return list[rng(#list)] end

local function count(word, letter)
  local n = 0
  for c in word:gmatch(".") do if c == letter then n = n + 1 end end
  return n
end

local makers = {
  function(rng, seller)
    local a, b = rng(10, 9999), rng(1, 999)
    return string.format("What is %d + %d?", a, b), tostring(a + b)
  end,
  function(rng, seller)
    local a = rng(100, 9999)
    local b = rng(1, a)
    return string.format("What is %d - %d?", a, b), tostring(a - b)
  end,
  function(rng, seller)
    local a, b = rng(10, 99), rng(2, 9)
    return string.format("What is %d times %d?", a, b), tostring(a * b)
  end,
  function(rng, seller)
    local i = rng(#ITEMS)
    local j = (i + rng(#ITEMS - 1) - 1) % #ITEMS + 1
    local a, b = ITEMS[i], ITEMS[j]
    local x, y = rng(1, 9), rng(1, 9)
    return string.format("%s sells a %s for %d gold and a %s for %d gold. How much for %d %s and %d %s?",
                         seller, a[1], a[2], b[1], b[2], x, a[1], y, b[1]),
           tostring(a[2] * x + b[2] * y)
  end,
  function(rng, seller)
    local word = pick(WORDS, rng)
    local k = rng(#word)
    local letter = word:sub(k, k)
    return string.format("How many %s are in %s?", letter, word), tostring(count(word, letter))
  end,
  function(rng, seller)
    local a, b = rng(10, 999), rng(10, 999)
    if a == b then b = b + 1 end
    return string.format("Which is bigger, %d or %d?", a, b), tostring(math.max(a, b))
  end,
}

-- A question and its expected answer text; `rng` is love.math.random, `seller` a villager name.
function M.next(rng, seller)
  return makers[rng(#makers)](rng, seller)
end

return M

-- message_size(fixed, id, text): the bytes a stream entry's message takes in a reply, exactly as
-- `skat_protocol::message_size` counts them (its JSON, escaped as serde_json writes it, and a
-- separator), so that a recovery read here admits what the Rust side would and no more.
-- `fixed`: the JSON around the fields and the room (ARGV of the script); `id`: the entry's id,
-- whose milliseconds are the message's `ts`; `text`: the codec's stored form (codec.rs),
-- `<from>\n<nonce length or ->\n<nonce><body>`, not JSON. The text is measured escaped (a quote,
-- backslash, \b \t \n \f \r take 1 byte more; other control characters 5 more, \u00XX), less
-- what the message does not hold (the two separators, 2 bytes each escaped, and the nonce
-- length); a nonce adds its key (NONCE_FRAMING, set before this fragment). Two gsubs count the
-- escapes in C; the second runs only when there are escapes besides the separators.
local function message_size(fixed, id, text)
  local first = string.find(text, '\n', 1, true)
  local second = first and string.find(text, '\n', first + 1, true)
  -- Not the codec's form (decoding it fails the read anyway): counted as it stands, escaped
  -- at worst, rather than failing every join of the room here.
  if not second then return fixed + 2 * #id + 6 * #text end
  local nonce_length = string.sub(text, first + 1, second - 1)
  local _, escapes = string.gsub(text, '[%z\1-\31"\\]', '')
  local extra = escapes
  if escapes > 2 then
    local _, short = string.gsub(text, '[\b\t\n\f\r"\\]', '')
    extra = short + 5 * (escapes - short)
  end
  local ts_digits = string.find(id, '-', 1, true) - 1
  local bytes = fixed + #id + ts_digits + #text + extra - 4 - #nonce_length
  if nonce_length ~= '-' then bytes = bytes + NONCE_FRAMING end
  return bytes
end

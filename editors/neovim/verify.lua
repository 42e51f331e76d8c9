-- Checks that Neovim shows `fa lsp`'s diagnostics: opens the file given on the command line,
-- attaches `fa lsp` (start_client, which Neovim 0.7 from Debian has too), waits for the
-- diagnostics, writes them as Neovim holds them to $OUT and quits. Run by verify.sh.
local fa = os.getenv("FA") or "fa"
local out = assert(os.getenv("OUT"), "set OUT to the file to write")
local buf = vim.api.nvim_get_current_buf()
local client = vim.lsp.start_client({ name = "fa", cmd = { fa, "lsp" }, root_dir = vim.fn.getcwd() })
vim.lsp.buf_attach_client(buf, client)
local arrived = vim.wait(20000, function()
  return #vim.diagnostic.get(buf) > 0
end, 50)
local lines = {}
if not arrived then
  table.insert(lines, "no diagnostics within 20 s")
end
local names = { "error", "warning", "info", "hint" }
for _, d in ipairs(vim.diagnostic.get(buf)) do
  local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code) or ""
  local first = vim.split(d.message, "\n")[1]
  table.insert(lines, string.format("%s:%d:%d: %s %s: %s", vim.fn.expand("%:t"), d.lnum + 1, d.col + 1,
    names[d.severity] or "?", code, first))
  for _, extra in ipairs(vim.list_slice(vim.split(d.message, "\n"), 2)) do
    table.insert(lines, "    " .. extra)
  end
end
vim.fn.writefile(lines, out)
vim.lsp.stop_client(client)
vim.cmd("qa!")

-- Neovim 0.8 or later: put this file in ~/.config/nvim/plugin/ (or source it from init.lua).
-- .fa files get `fa lsp`: diagnostics as you type, hover (K), go to definition, symbols,
-- formatting (vim.lsp.buf.format) and completion (omnifunc, <C-x><C-o>).
vim.filetype.add({ extension = { fa = "fa" } })
vim.api.nvim_create_autocmd("FileType", {
  pattern = "fa",
  callback = function(args)
    vim.bo[args.buf].commentstring = "// %s"
    vim.bo[args.buf].omnifunc = "v:lua.vim.lsp.omnifunc"
    vim.lsp.start({
      name = "fa",
      cmd = { "fa", "lsp" },
      root_dir = vim.fs.dirname(vim.api.nvim_buf_get_name(args.buf)),
    })
  end,
})

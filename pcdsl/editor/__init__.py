# ---------------------------------------------------------------------------------------------
# Editor support: the words of the language for highlighters (vocabulary.py), a Pygments lexer
# registered as an entry point (pygments_lexer.py: `pygmentize -l pcdsl`, the docs site), and
# the TextMate grammar of editors/vscode, written from the same vocabulary (textmate.py).
# ---------------------------------------------------------------------------------------------

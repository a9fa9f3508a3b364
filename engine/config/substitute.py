"""``${env:VAR}``, ``${env:VAR:-default}``, ``${file:/path}`` (and ``$<env:VAR>``) in config strings.

``$$`` writes a literal ``$``. An unset variable without a default is an error that names the
variable and the key path, never a value. A file is read whole, with one trailing newline removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from engine.errors import ConfigError

_REF = re.compile(r"\$\$|\$\{(?P<a>[^}]*)\}|\$<(?P<b>[^>]*)>")


class Substituter:
    """Callable ``(value, key_path) -> value`` with the environment and base directory bound."""

    def __init__(
        self, env: Mapping[str, str] | None = None, base_dir: Path | None = None, source: str | None = None
    ) -> None:
        self.env = os.environ if env is None else env
        self.base_dir = base_dir or Path.cwd()
        self.source = source
        self.line: int | None = None

    def __call__(self, value: str, path: str) -> str:
        if "$" not in value:
            return value
        return _REF.sub(lambda m: self._one(m, path), value)

    def _one(self, m: re.Match[str], path: str) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = m.group("a") if m.group("a") is not None else m.group("b")
        kind, sep, rest = ref.partition(":")
        kind = kind.strip()
        if not sep or kind not in ("env", "file"):
            raise ConfigError(
                f"unknown substitution {m.group(0)!r}: "
                "use ${env:VAR}, ${env:VAR:-default} or ${file:/path}",
                path=path,
                file=self.source,
            )
        if kind == "env":
            name, has_default, default = rest.partition(":-")
            name = name.strip()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ConfigError(f"invalid environment variable name {name!r}", path=path, file=self.source)
            found = self.env.get(name)
            if found is None or (found == "" and has_default):
                if has_default:
                    return default
                raise ConfigError(
                    f"environment variable {name} is not set (write ${{env:{name}:-default}} for a default)",
                    path=path,
                    file=self.source,
                )
            return found
        file_path = Path(rest.strip())
        if not file_path.is_absolute():
            file_path = self.base_dir / file_path
        try:
            text = file_path.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(
                f"cannot read file {str(file_path)!r}: {reason}", path=path, file=self.source
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"file {str(file_path)!r} is not UTF-8 text", path=path, file=self.source
            ) from None
        return text[:-1] if text.endswith("\n") else text

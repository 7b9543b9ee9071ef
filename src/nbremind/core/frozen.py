"""Frozen value classes made without :mod:`dataclasses`.

``import dataclasses`` brings :mod:`inspect`, :mod:`ast` and :mod:`dis` (about 9 ms, a third
of ``import nbremind``), so the values that module defines at import (the settings, a task's
options and snapshot) derive from :class:`Frozen` instead. Modules loaded later keep using
dataclasses.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

__all__ = ["Frozen", "set_field"]

_F = TypeVar("_F", bound="Frozen")

#: Sets an attribute past :meth:`Frozen.__setattr__` (what a subclass's ``__init__`` uses).
set_field = object.__setattr__


class Frozen:
    """An immutable value whose fields are its class's annotated attributes, in order
    (base classes first; ``ClassVar`` ones are not fields).

    A subclass writes its own typed ``__init__``, setting each field with
    :func:`set_field`. This base gives equality and hashing by fields (and type), a
    ``repr`` that names them, :meth:`replace`, :meth:`as_dict`, pickling and copying.
    """

    #: The names of the fields, in order.
    FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.FIELDS = tuple(
            name
            for klass in reversed(cls.__mro__)
            # (not inspect.get_annotations: inspect is what this module keeps out)
            for name, kind in klass.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
            if not str(kind).startswith(("ClassVar", "typing.ClassVar"))
        )

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to {name!r}: a {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete {name!r}: a {type(self).__name__} is frozen")

    def values(self) -> tuple[Any, ...]:
        """The fields' values, in the order of :attr:`FIELDS`."""
        return tuple([getattr(self, name) for name in self.FIELDS])

    def as_dict(self) -> dict[str, Any]:
        """Every field and its value."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self: _F, **changes: Any) -> _F:
        """A copy with ``changes`` applied (made through the class's ``__init__``, which
        checks them as it checks any value); an unknown name raises ``TypeError``."""
        unknown = [name for name in changes if name not in self.FIELDS]
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {unknown[0]!r}")
        return type(self)(**{**self.as_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash((self.__class__, self.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuilt, (type(self), self.values()))


def _rebuilt(cls: type[_F], values: tuple[Any, ...]) -> _F:
    """A ``cls`` with ``values`` (unpickling and copying: no ``__init__`` runs)."""
    made = object.__new__(cls)
    for name, value in zip(cls.FIELDS, values, strict=True):
        set_field(made, name, value)
    return made

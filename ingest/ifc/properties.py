"""Property and quantity sets of IFC products, read as JSON-able data.

An element's sets are its type's merged under its own (IFC type inheritance), read from one
pass over the model's IfcRelDefinesByProperties and each set read once (exporters share sets
between elements), with a fast path for the sets of single values and simple quantities that
nearly all models hold. Also the common flags (``Pset_*Common``), materials and the
predefined type, and ``attr``, the attribute access the ingest uses for optional attributes.

Odd sets degrade alone (ingest.ifc.quirks): a set without a name (ArchiCAD) is kept under
``(unnamed <GlobalId>)``, a property without one under ``(unnamed)``, a property ifcopenshell
cannot read is left out of its set; each is recorded in the reader's ``odd``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import ifcopenshell
import ifcopenshell.util.element as uel

from ingest.ifc.quirks import OddItems, is_reference, label, related_many, related_one


class PropertyReader:
    """The sets of one model's products; remembers what it has read (see ``properties``)."""

    def __init__(self, model: ifcopenshell.file, odd: OddItems | None = None) -> None:
        self.model = model
        self.odd = odd if odd is not None else OddItems()
        self._type_sets: dict[int, dict[str, tuple[bool, dict[str, Any]]]] = {}
        self._defs_of: dict[int, list[Any]] | None = None
        self._def_values: dict[int, tuple[bool, dict[str, Any]]] = {}
        self._names: dict[int, str] = {}  # set id -> its name (set_name), read once

    def definitions(self) -> dict[int, list[Any]]:
        """Object id -> its property and quantity set definitions, in file order, from one pass
        over the IfcRelDefinesByProperties (asking each product for its IsDefinedBy through
        ``get_psets`` was a large part of a small model's non-geometry time)."""
        if self._defs_of is None:
            self._defs_of = defaultdict(list)
            for rel in self.model.by_type("IfcRelDefinesByProperties"):
                # by the attribute's index, looked up by name once per class (argument): the
                # names cost three lookups each
                definition = related_one(
                    rel,
                    "RelatingPropertyDefinition",
                    self.odd,
                    argument(rel, "RelatingPropertyDefinition"),
                )
                if definition is None:
                    continue
                # IfcPropertySetDefinitionSet (IFC4) wraps a list of definitions
                defs = (
                    definition.wrappedValue
                    if definition.is_a("IfcPropertySetDefinitionSet")
                    else (definition,)
                )
                related = argument(rel, "RelatedObjects")
                for obj in related_many(rel, "RelatedObjects", self.odd, related):
                    self._defs_of[obj.id()].extend(defs)
        return self._defs_of

    def _definition(self, definition: Any) -> tuple[bool, dict[str, Any]]:
        """(is a quantity set, its values as JSON-able data, without "id") of one set, read
        once: exporters share sets between elements (duplex: 2,350 uses of 1,480 sets). The
        dict is shared: read it, never change it."""
        key = definition.id()
        if key not in self._def_values:
            is_qto = bool(definition.is_a("IfcElementQuantity"))
            values: dict[Any, Any] | None = _simple_values(definition)
            if values is None:
                values = self._general_values(definition, is_qto)
            if None in values:  # properties without a name, merged as get_properties does
                values["(unnamed)"] = values.pop(None)
                self.odd.add("unnamed_property", definition)
            self._def_values[key] = (is_qto, values)
        return self._def_values[key]

    def _general_values(self, definition: Any, is_qto: bool) -> dict[Any, Any]:
        """A set's values through ifcopenshell's general reader; where it fails on the set
        (a complex property without parts ...), property by property, leaving out (and
        recording) those it cannot read."""
        try:
            values: dict[Any, Any] = jsonable(uel.get_property_definition(definition))
            return values
        except Exception:  # ifcopenshell's readers raise what the odd data makes them
            pass
        parts = attr(definition, "Quantities" if is_qto else "HasProperties") or ()
        if not isinstance(parts, list | tuple):  # one value where the schema has a set
            parts = (parts,)
        read = uel.get_quantities if is_qto else uel.get_properties
        out: dict[Any, Any] = {}
        for part in parts:
            if not isinstance(part, ifcopenshell.entity_instance) or part.id() == 0:
                # a string, a number or a list where the schema has properties
                self.odd.add("odd_set_member", definition, f"{type(part).__name__} {part!r:.40}")
                continue
            listed = _list_value(part)
            if listed is not None:
                out[argument(part, "Name")] = listed
                self.odd.add("list_value", definition, f"{part.is_a()} {part.Name!r}")
                continue
            try:
                out.update(jsonable(read([part])))
            except Exception:
                self.odd.add("unreadable_property", definition, f"{part.is_a()} {part.Name!r}")
        return out

    def set_name(self, definition: Any) -> str:
        """A set's Name; a set without one (ArchiCAD) is named by its GlobalId, so that it
        neither merges with other unnamed sets nor breaks the sorting of names."""
        name = attr(definition, "Name")
        if name:
            return str(name)
        self.odd.add("unnamed_set", definition)
        return f"(unnamed {label(definition)})"

    def _merged_sets(self, definitions: Iterable[Any]) -> dict[str, tuple[bool, dict[str, Any]]]:
        """What ``get_psets(..., should_inherit=False)`` gives for these set definitions (sets of
        one name merged, the last set's kind kept), as {set name: (is a quantity set, values)}."""
        out: dict[str, tuple[bool, dict[str, Any]]] = {}
        for definition in definitions:
            if definition is None:
                continue
            is_qto, values = self._definition(definition)
            name = self._names.get(definition.id())
            if name is None:
                name = self._names[definition.id()] = self.set_name(definition)
            if name in out:
                values = {**out[name][1], **values}
            out[name] = (is_qto, values)
        return out

    def occurrence_sets(self, entity: Any) -> dict[str, tuple[bool, dict[str, Any]]]:
        """The entity's own sets (not its type's), as ``get_psets(..., should_inherit=False)``."""
        return self._merged_sets(self.definitions().get(entity.id(), ()))

    def properties(self, product: Any) -> dict[str, Any]:
        """Property and quantity sets, the type's merged under the occurrence's own (the type's
        sets are read once per type: many occurrences share them)."""
        try:
            ptype = uel.get_type(product)
        except AttributeError:
            # IsTypedBy holding another relation (found by fuzzing): no type, recorded
            self.odd.add_once("ignored_relation", product, f"type relation of {label(product)}")
            ptype = None
        if ptype is not None and not (
            isinstance(ptype, ifcopenshell.entity_instance) and ptype.is_a("IfcTypeObject")
        ):
            self.odd.add_once("ignored_relation", product, f"type relation of {label(product)}")
            ptype = None
        merged: dict[str, tuple[bool, dict[str, Any]]] = {}
        if ptype is not None:
            key = ptype.id()
            if key not in self._type_sets:
                # a type's sets as references only: a number there (a fuzzed file's) is odd
                sets = related_many(
                    ptype, "HasPropertySets", self.odd, attr(ptype, "HasPropertySets")
                )
                self._type_sets[key] = self._merged_sets(sets)
            merged.update(self._type_sets[key])
        for name, (is_qto, values) in self.occurrence_sets(product).items():
            if name in merged:
                values = {**merged[name][1], **values}
            merged[name] = (is_qto, values)
        psets = {name: values for name, (is_qto, values) in merged.items() if not is_qto}
        qsets = {name: values for name, (is_qto, values) in merged.items() if is_qto}
        flags: dict[str, Any] = {}
        for name in sorted(psets):
            if name.startswith("Pset_") and name.endswith("Common"):
                flags.update(psets[name])
        found: list[Any] = []
        # with its type's (unless its type relation holds another relation: ptype None), else
        # its own only
        for inherit in (True, False) if ptype is not None else (False,):
            try:
                found = uel.get_materials(product, should_inherit=inherit)
                break
            except AttributeError:
                # a material association holding a number or text (found by fuzzing)
                self.odd.add_once("odd_relation", product, "IfcRelAssociatesMaterial")
        materials = sorted(
            {m.Name for m in found if is_reference(m) and isinstance(attr(m, "Name"), str)}
        )
        return {
            "psets": psets,
            "qsets": qsets,
            "flags": flags,
            "type_name": attr(ptype, "Name"),
            "type_class": ptype.is_a() if ptype else None,
            "materials": materials,
            "predefined_type": _predefined_type(product, ptype),
        }


def jsonable(value: Any) -> Any:
    """IFC values as JSON: no "id" keys, no NaN, an entity by its name (else its class)."""
    if isinstance(value, dict):
        # a None key (a property without a name) stays None: _definition renames it
        return {(None if k is None else str(k)): jsonable(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ifcopenshell.entity_instance):
        if value.id() == 0:  # a value of a defined type (IfcReal(2.) in a bounded value)
            return jsonable(value.wrappedValue)
        return attr(value, "Name") or value.is_a()
    return str(value)


_PLAIN = (str, int, float, bool, type(None))


def _simple_values(definition: Any) -> dict[str, Any] | None:
    """The values of a property set of single values or a quantity set of simple quantities
    (nearly all of them) as JSON-able data, as ``get_property_definition`` gives them (less
    "id"). Read with ``argument`` (by the attribute's index, without the wrapper's checks:
    several times faster than get_property_definition). None for anything else, for a property
    without a name and for a value that is not a plain number or string (the caller takes the
    general path)."""
    kind = definition.is_a()
    out: dict[str, Any] = {}
    if kind == "IfcPropertySet":
        props = argument(definition, "HasProperties") or ()
        if not isinstance(props, list | tuple):
            return None  # one value where the schema has a set (_general_values)
        for prop in props:
            if (
                not isinstance(prop, ifcopenshell.entity_instance)
                or prop.is_a() != "IfcPropertySingleValue"
            ):
                return None
            v = argument(prop, "NominalValue")  # an IfcValue: its wrapped value
            if not isinstance(v, ifcopenshell.entity_instance | None):
                return None  # a list of values (see _list_value)
            out[argument(prop, "Name")] = v.wrappedValue if v is not None else None
    elif kind == "IfcElementQuantity":
        quantities = argument(definition, "Quantities") or ()
        if not isinstance(quantities, list | tuple):
            return None
        for q in quantities:
            if not isinstance(q, ifcopenshell.entity_instance) or not q.is_a(
                "IfcPhysicalSimpleQuantity"
            ):
                return None
            out[argument(q, "Name")] = q.get_argument(_quantity_value_index(q))
    else:
        return None
    if None in out:
        return None
    for v in out.values():
        if not isinstance(v, _PLAIN) or (isinstance(v, float) and not math.isfinite(v)):
            return None
    return out


def _list_value(prop: Any) -> list[Any] | None:
    """The values of a single-value property whose NominalValue is a list (the schema has one
    IfcValue there; ifcopenshell reads a list written there as a tuple and its readers fail on
    it), as JSON-able data; None for any other property."""
    if prop.is_a() != "IfcPropertySingleValue":
        return None
    value = argument(prop, "NominalValue")
    if not isinstance(value, list | tuple):
        return None
    return [jsonable(v) for v in value]


#: (schema and class, attribute name) -> the attribute's index (see argument)
_INDEX: dict[tuple[str, str], int] = {}


def argument(entity: Any, name: str) -> Any:
    """``entity.<name>`` read by the attribute's index, looked up by name once per class:
    several times faster than ``entity.<name>`` in the loops over every set, and right in
    every schema and class (a fixed index reads another attribute where a class differs)."""
    key = (entity.is_a(True), name)
    index = _INDEX.get(key)
    if index is None:
        index = _INDEX[key] = entity.get_argument_index(name)
    return entity.get_argument(index)


def _quantity_value_index(quantity: Any) -> int:
    """The index of a simple quantity's value (LengthValue, AreaValue, ... WeightValue)."""
    key = (quantity.is_a(True), "<value>")
    index = _INDEX.get(key)
    if index is None:
        names = quantity.get_attribute_names()
        index = _INDEX[key] = next(
            i for i, n in enumerate(names) if n.endswith("Value") and n != "Formula"
        )
    return index


def attr(entity: Any, name: str) -> Any:
    """``entity.<name>``, or None when there is no entity or its class has no such attribute.

    Not getattr with a default: for a name its class lacks, ifcopenshell tries to import
    compiled EXPRESS rules for derived attributes and lists the working directory before it
    raises, slow enough to show in an ingest's time."""
    if entity is None or entity.get_attribute_category(name) not in (1, 2):  # forward, inverse
        return None
    return getattr(entity, name)


def _predefined_type(product: Any, ptype: Any) -> str | None:
    """PredefinedType of the occurrence, else of its type; USERDEFINED resolves to the name given
    (ObjectType / ElementType), as ifcopenshell.util.element.get_predefined_type does."""
    value = attr(product, "PredefinedType")
    if value == "USERDEFINED":
        return attr(product, "ObjectType") or value
    if value and value != "NOTDEFINED":
        return str(value)
    tvalue = attr(ptype, "PredefinedType")
    if tvalue == "USERDEFINED":
        return attr(ptype, "ElementType") or tvalue
    if tvalue:
        return str(tvalue)
    return str(value) if value else None


#: IFC attributes that size an element, kept in metres (``elements.attributes``)
SIZE_ATTRIBUTES = ("OverallWidth", "OverallHeight")


def size_attributes(product: Any, unit_scale: float) -> dict[str, float] | None:
    """A window's or door's OverallWidth / OverallHeight in metres (None when it has none)."""
    out: dict[str, float] = {}
    for name in SIZE_ATTRIBUTES:
        value = attr(product, name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(float(value)) and value > 0:
            out[name] = float(value) * unit_scale
    return out or None


def material_layers(
    model: ifcopenshell.file, product: Any, unit_scale: float
) -> list[dict[str, Any]] | None:
    """The element's material layers (its own layer set usage, else its type's), each with
    its thickness in metres and the material's thermal conductivity (W/(m.K)) when the model
    gives one (IFC4 Pset_MaterialThermal, IFC2X3 IfcThermalMaterialProperties)."""
    try:
        found = uel.get_material(product, should_inherit=True)
    except (AttributeError, TypeError):  # a type relation holding another relation
        return None
    if not isinstance(found, ifcopenshell.entity_instance):
        return None
    if found.is_a("IfcMaterialLayerSetUsage"):
        found = attr(found, "ForLayerSet")
    if not isinstance(found, ifcopenshell.entity_instance) or not found.is_a("IfcMaterialLayerSet"):
        return None
    out: list[dict[str, Any]] = []
    layers = attr(found, "MaterialLayers") or ()
    for layer in layers if isinstance(layers, list | tuple) else ():
        if not isinstance(layer, ifcopenshell.entity_instance):
            continue
        thickness = attr(layer, "LayerThickness")
        material = attr(layer, "Material")
        name = attr(material, "Name") if material is not None else None
        out.append(
            {
                "material": name if isinstance(name, str) else None,
                "thickness": (
                    float(thickness) * unit_scale
                    if isinstance(thickness, int | float) and math.isfinite(float(thickness))
                    else None
                ),
                "conductivity": _conductivity(model, material) if material is not None else None,
            }
        )
    return out or None


def _conductivity(model: ifcopenshell.file, material: Any) -> float | None:
    try:
        sets = uel.get_psets(material)
    except (AttributeError, TypeError, RuntimeError):
        sets = {}
    for name, values in sets.items():
        if isinstance(values, dict) and "thermal" in name.casefold():
            v = values.get("ThermalConductivity")
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                return float(v)
    try:
        inverse = model.get_inverse(material)
    except (AttributeError, RuntimeError, TypeError):
        return None
    for entity in inverse:
        if entity.is_a("IfcThermalMaterialProperties"):
            v = attr(entity, "ThermalConductivity")
            if isinstance(v, int | float) and v > 0:
                return float(v)
    return None
